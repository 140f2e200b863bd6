//! `commons authz import`: a Gen3 user.yaml adds grants and never removes others.

use crate::common;

use common::TestApp;
use commons::auth::{Permissions, import_user_yaml};

const USER_YAML: &str = r#"
authz:
  anonymous_policies: [open_data_reader]
  all_users_policies: []
  groups:
    - name: curators
      policies: [prog_writer]
      users: [carol]
  resources:
    - name: programs
      subresources:
        - name: prog
          subresources:
            - name: projects
              subresources:
                - name: proj
    - name: open
  policies:
    - id: open_data_reader
      role_ids: [reader]
      resource_paths: [/open]
    - id: prog_writer
      role_ids: [writer]
      resource_paths: [/programs/prog]
    - id: proj_reader
      role_ids: [reader]
      resource_paths: [/programs/prog/projects/proj]
  roles:
    - id: writer
      permissions:
        - id: write
          action: {service: sheepdog, method: create}
users:
  Dave:
    admin: false
    policies: [proj_reader]
  erin:
    admin: true
"#;

#[tokio::test]
async fn user_yaml_grants_what_it_names_and_keeps_the_rest() {
    let app = TestApp::new(None).await;
    let store = &app.state.store;
    let summary = import_user_yaml(store, USER_YAML).await.unwrap();
    assert_eq!(summary.policies, 3);
    assert_eq!(summary.users, 3, "carol, Dave and erin are created");

    let dave = Permissions::load(store, Some("dave")).await.unwrap();
    assert!(dave.allows("/programs/prog/projects/proj", "sheepdog", "read"));
    assert!(!dave.allows("/programs/prog/projects/proj", "sheepdog", "create"));
    let carol = Permissions::load(store, Some("carol")).await.unwrap();
    assert!(carol.allows("/programs/prog/projects/proj", "sheepdog", "create"));
    let anonymous = Permissions::load(store, None).await.unwrap();
    assert!(anonymous.allows("/open/x", "peregrine", "read"));
    let erin = Permissions::load(store, Some("erin")).await.unwrap();
    assert!(
        erin.allows("/", "sheepdog", "*"),
        "admin: true grants the administrator policy"
    );
    // The bootstrap administrator's grant was not named and is still there.
    let admin = Permissions::load(store, Some("admin")).await.unwrap();
    assert!(admin.allows("/services/sheepdog/submission/program", "sheepdog", "*"));

    // Importing again changes nothing; a file granting an undefined policy changes nothing.
    import_user_yaml(store, USER_YAML).await.unwrap();
    let before = store.policies().await.unwrap().len();
    let bad = "authz:\n  policies: [{id: p2, role_ids: [reader], resource_paths: [/x]}]\nusers:\n  zed: {policies: [nope]}\n";
    let err = import_user_yaml(store, bad).await.unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    assert_eq!(store.policies().await.unwrap().len(), before);
    assert!(store.user_by_name("zed").await.unwrap().is_none());
}
