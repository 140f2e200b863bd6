//! Administration against the database, server running or not: users,
//! authorization imports, API keys and signing keys, manifests of the file
//! index.

use anyhow::Context;

use super::*;
use crate::auth;
use crate::file_index::FileIndex;
use crate::store::Store;

/// `commons users ...`.
pub(super) async fn users(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add {
            name,
            admin,
            password_stdin,
            database,
        } => {
            let store = database.open().await?;
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            auth::add_user(&store, &name, password.as_deref(), admin).await?;
            eprintln!(
                "user '{name}' created{}",
                if admin { " (administrator)" } else { "" }
            );
            Ok(())
        }
        UsersCommand::Passwd { name, database } => {
            let store = database.open().await?;
            let user = store
                .user_by_name(&name)
                .await?
                .with_context(|| format!("no user named '{name}'"))?;
            let password = read_password()?;
            store
                .set_password(user.id, &auth::hash_password(&password))
                .await?;
            eprintln!("password of '{name}' set; its sessions have ended");
            Ok(())
        }
        UsersCommand::Disable { name, database } => {
            let store = database.open().await?;
            let user = named_user(&store, &name).await?;
            store.set_active(user.id, false).await?;
            eprintln!("user '{name}' disabled");
            Ok(())
        }
        UsersCommand::Enable { name, database } => {
            let store = database.open().await?;
            let user = named_user(&store, &name).await?;
            store.set_active(user.id, true).await?;
            eprintln!("user '{name}' enabled");
            Ok(())
        }
        UsersCommand::EndSessions { name, database } => {
            let store = database.open().await?;
            let user = named_user(&store, &name).await?;
            store.end_sessions(user.id).await?;
            eprintln!("every session of '{name}' has ended");
            Ok(())
        }
        UsersCommand::List { database } => {
            let store = database.open().await?;
            for user in store.list_users().await? {
                println!(
                    "{}\t{}",
                    user.username,
                    if user.is_admin { "admin" } else { "user" }
                );
            }
            Ok(())
        }
    }
}

/// `commons authz ...`.
pub(super) async fn authz(command: AuthzCommand) -> anyhow::Result<()> {
    match command {
        AuthzCommand::Import { file, database } => {
            let store = database.open().await?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let summary = auth::import_user_yaml(&store, &text)
                .await
                .with_context(|| format!("{} was not imported", file.display()))?;
            eprintln!(
                "imported {}: {} resources, {} roles, {} policies, {} new users, {} grants",
                file.display(),
                summary.resources,
                summary.roles,
                summary.policies,
                summary.users,
                summary.grants
            );
            Ok(())
        }
    }
}

/// `commons keys ...`.
pub(super) async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            name,
            expires_in,
            public_url,
            database,
        } => {
            let store = database.open().await?;
            let public_url = match public_url {
                Some(url) => url,
                None => store.setting("public_url").await?.context(
                    "no public URL known yet: start `commons serve` once or pass --public-url",
                )?,
            };
            let tokens = TokenService::load(&store, &public_url, Lifetimes::default()).await?;
            let user = store.user_by_name(&name).await?.with_context(|| {
                format!("no user named '{name}' (create one with `commons users add`)")
            })?;
            let scopes = auth::tokens::USER_ALLOWED_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect();
            let credentials =
                auth::create_api_key(&store, &tokens, &user, scopes, expires_in).await?;
            println!("{}", serde_json::to_string(&credentials)?);
            Ok(())
        }
        KeysCommand::List { name, database } => {
            let store = database.open().await?;
            let user = store
                .user_by_name(&name)
                .await?
                .with_context(|| format!("no user named '{name}'"))?;
            for key in store.list_api_keys(user.id).await? {
                let expires = chrono::DateTime::from_timestamp(key.exp, 0)
                    .map_or_else(|| key.exp.to_string(), |t| t.to_rfc3339());
                println!("{}\texpires {expires}", key.jti);
            }
            Ok(())
        }
        KeysCommand::Revoke { key_id, database } => {
            let store = database.open().await?;
            let key = store
                .api_key(&key_id)
                .await?
                .with_context(|| format!("no API key with key_id {key_id}"))?;
            if !store.revoke_api_key(&key_id, key.user_id).await? {
                bail!("API key {key_id} was already revoked");
            }
            eprintln!("API key {key_id} revoked");
            Ok(())
        }
        KeysCommand::Retire { kid, database } => {
            let store = database.open().await?;
            if !store.retire_signing_key(&kid).await? {
                bail!("no signing key {kid} in use");
            }
            eprintln!("signing key {kid} retired; running servers drop it within a minute");
            Ok(())
        }
        KeysCommand::Rotate { database } => {
            let store = database.open().await?;
            let kid = auth::tokens::rotate(&store).await?;
            eprintln!(
                "new signing key {kid}; running servers pick it up on their next unknown token"
            );
            Ok(())
        }
    }
}

/// `commons index ...`.
pub(super) async fn index(command: IndexCommand) -> anyhow::Result<()> {
    match command {
        IndexCommand::Import {
            manifest,
            index_prefix,
            database,
        } => {
            let store = database.open().await?;
            let index = FileIndex {
                store: &store,
                prefix: &index_prefix,
                landing: None,
            };
            let comma = manifest.extension().is_some_and(|e| e == "csv");
            let started = std::time::Instant::now();
            let open = || -> std::io::Result<Box<dyn std::io::Read + Send>> {
                Ok(Box::new(std::io::BufReader::new(std::fs::File::open(
                    &manifest,
                )?)))
            };
            let summary = index
                .import_manifest(open, comma)
                .await
                .with_context(|| format!("{} was not imported", manifest.display()))?;
            store.close().await?;
            eprintln!(
                "{}: {} records created, {} updated, {} unchanged in {:.1} s",
                manifest.display(),
                summary.created,
                summary.updated,
                summary.unchanged,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        IndexCommand::Export { out, database } => {
            let store = database.open().await?;
            let index = FileIndex {
                store: &store,
                prefix: "",
                landing: None,
            };
            let (written, skipped) = match &out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let mut file = std::io::BufWriter::new(file);
                    index.export_manifest(&mut file).await?
                }
                None => {
                    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
                    index.export_manifest(&mut stdout).await?
                }
            };
            store.close().await?;
            eprintln!(
                "{written} records exported{}",
                if skipped > 0 {
                    format!(" ({skipped} blank upload records without size or md5 left out)")
                } else {
                    String::new()
                }
            );
            Ok(())
        }
    }
}

async fn named_user(store: &Store, name: &str) -> anyhow::Result<crate::store::UserRow> {
    store
        .user_by_name(name)
        .await?
        .with_context(|| format!("no user named '{name}'"))
}

/// A password from standard input (one line; the newline is not part of it).
fn read_password() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    if text.is_empty() {
        bail!("expected a password on standard input");
    }
    Ok(text)
}
