//! The `commons` command line: the composition root that reads flags and
//! environment variables, opens the store and starts the server or runs an
//! administrative command against the same database.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::auth::{self, Lifetimes, TokenService};
use crate::dictionary::{self, Dictionary};
use crate::graphql::{self, Limits};
use crate::server::ConnectionLimits;
use crate::server::{self, AppState};
use crate::store::Store;
use crate::validate::Validators;

#[derive(Parser)]
#[command(
    name = "commons",
    version,
    about = "A Gen3-compatible data commons in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the commons on one address.
    Serve(ServeArgs),
    /// Validate a dictionary and print a summary.
    CheckDictionary {
        /// A folder of YAML schemas, a schema.json bundle or an http(s) URL.
        path: String,
    },
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Write a consistent online backup of the whole commons to an SQLite file.
    Backup {
        /// The backup file to create (it must not exist).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Restore a backup file into an empty database.
    Restore {
        /// A file written by `commons backup`.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Copy a whole commons into an empty database (e.g. SQLite to PostgreSQL).
    MigrateData {
        /// Source database URL (sqlite://PATH or postgres://...).
        #[arg(long)]
        from: String,
        /// Target database URL; it must hold no users or records yet.
        #[arg(long)]
        to: String,
    },
    /// Write valid synthetic records for every submittable type of a dictionary.
    Simulate {
        /// Dictionary: YAML folder, schema.json bundle or URL (default: bundled).
        #[arg(long)]
        dictionary: Option<String>,
        #[arg(long)]
        program: String,
        #[arg(long)]
        project: String,
        /// Records per node type.
        #[arg(long, default_value_t = 10)]
        scale: usize,
        #[arg(long, value_enum, default_value = "tsv")]
        format: SimulateFormat,
        /// Also write one bad record per file, listed in invalid.tsv.
        #[arg(long)]
        invalid: bool,
        /// Varies the generated values reproducibly.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Manage local user accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage authorization (arborist) data.
    #[command(subcommand)]
    Authz(AuthzCommand),
    /// Manage API keys and token-signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// Where the database is: shared by every command that touches it.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SimulateFormat {
    Tsv,
    Json,
}

#[derive(Args, Clone)]
struct DatabaseArgs {
    /// Folder for the embedded database and credentials.json.
    #[arg(long, env = "COMMONS_DATA_DIR", default_value = "./commons-data")]
    data_dir: PathBuf,
    /// Database URL (default: an SQLite file in the data directory).
    #[arg(long, env = "COMMONS_DATABASE_URL")]
    database_url: Option<String>,
}

impl DatabaseArgs {
    async fn open(&self) -> anyhow::Result<Store> {
        if !self.data_dir.exists() {
            // The database holds the token-signing keys: only its owner may read it.
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.data_dir)
                .with_context(|| {
                    format!("cannot create data directory {}", self.data_dir.display())
                })?;
        }
        let url = self
            .database_url
            .clone()
            .unwrap_or_else(|| Store::default_url(&self.data_dir));
        Store::open(&url)
            .await
            .with_context(|| format!("cannot open database {url}"))
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "COMMONS_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Data dictionary: YAML folder, schema.json bundle or URL (default: bundled).
    #[arg(long, env = "COMMONS_DICTIONARY")]
    dictionary: Option<String>,
    /// The URL users reach this commons at (default: http://<listen>).
    #[arg(long, env = "COMMONS_PUBLIC_URL")]
    public_url: Option<String>,
    /// On first start, create an administrator and write <data-dir>/credentials.json.
    #[arg(long, env = "COMMONS_BOOTSTRAP_ADMIN", default_value_t = true, action = clap::ArgAction::Set)]
    bootstrap_admin: bool,
    /// Lifetime of new API keys, in seconds.
    #[arg(long, env = "COMMONS_API_KEY_TTL", default_value_t = Lifetimes::default().api_key)]
    api_key_ttl: i64,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "COMMONS_ACCESS_TOKEN_TTL", default_value_t = Lifetimes::default().access_token)]
    access_token_ttl: i64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "COMMONS_MAX_BODY_BYTES", default_value_t = 1 << 30)]
    max_body_bytes: usize,
    /// Longest a request body may stall between two pieces, in seconds.
    #[arg(long, env = "COMMONS_BODY_IDLE_TIMEOUT", default_value_t = 60)]
    body_idle_timeout: u64,
    /// Largest submitted document (a TSV/CSV row or a JSON object), in bytes.
    #[arg(long, env = "COMMONS_MAX_DOCUMENT_BYTES", default_value_t = crate::formats::DocumentLimits::default().max_document_bytes)]
    max_document_bytes: usize,
    /// Largest value in a submitted document, in bytes.
    #[arg(long, env = "COMMONS_MAX_CELL_BYTES", default_value_t = crate::formats::DocumentLimits::default().max_cell_bytes)]
    max_cell_bytes: usize,
    /// Most connections open at once; more wait in the kernel's queue or are closed.
    #[arg(long, env = "COMMONS_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..), default_value_t = ConnectionLimits::default().max_connections as u64)]
    max_connections: u64,
    /// Most connections open at once from one client address.
    #[arg(long, env = "COMMONS_MAX_CONNECTIONS_PER_CLIENT", value_parser = clap::value_parser!(u64).range(1..), default_value_t = ConnectionLimits::default().max_per_client as u64)]
    max_connections_per_client: u64,
    /// Longest wait for a request's headers (also how long a kept-alive
    /// connection may stay idle), in seconds.
    #[arg(long, env = "COMMONS_HEADER_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..), default_value_t = ConnectionLimits::default().header_timeout.as_secs())]
    header_timeout: u64,
    /// Longest a client may leave a response's bytes untaken, in seconds.
    #[arg(long, env = "COMMONS_WRITE_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..), default_value_t = ConnectionLimits::default().write_timeout.as_secs())]
    write_timeout: u64,
    /// Deepest GraphQL query accepted.
    #[arg(long, env = "COMMONS_GRAPHQL_MAX_DEPTH", default_value_t = Limits::default().max_depth)]
    graphql_max_depth: usize,
    /// Most complex GraphQL query accepted (fields counted over the whole query).
    #[arg(long, env = "COMMONS_GRAPHQL_MAX_COMPLEXITY", default_value_t = Limits::default().max_complexity)]
    graphql_max_complexity: usize,
    /// Longest a GraphQL statement may run, in seconds.
    #[arg(long, env = "COMMONS_GRAPHQL_TIMEOUT", default_value_t = Limits::default().timeout.as_secs())]
    graphql_timeout: u64,
    /// Most rows a GraphQL request's lists may return by estimate, from the
    /// `first` of every level (`first: 0` counts as 10,000); checked before running.
    #[arg(long, env = "COMMONS_GRAPHQL_MAX_ROWS", default_value_t = Limits::default().max_estimated_rows)]
    graphql_max_rows: u64,
    /// Most bytes of answer a GraphQL request may build in memory (a request
    /// of one root list is streamed and not limited).
    #[arg(long, env = "COMMONS_GRAPHQL_MAX_ANSWER_BYTES", default_value_t = Limits::default().max_answer_bytes)]
    graphql_max_answer_bytes: u64,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user (without a password the user can only use API keys).
    Add {
        name: String,
        /// Grant full administrator rights.
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Set a user's password, read from standard input (for `POST /user/login/local`).
    Passwd {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List users.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Refuse a user everything (tokens, API keys, sessions, logins) until enabled.
    Disable {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Let a disabled user in again.
    Enable {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// End every login session of a user (its API keys stay; revoke them with `keys revoke`).
    EndSessions {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum AuthzCommand {
    /// Add the resources, roles, policies, groups and users of a Gen3 user.yaml
    /// (nothing it does not name is removed).
    Import {
        file: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new API key for a user as credentials.json on standard output.
    Create {
        name: String,
        /// Lifetime in seconds (at most the configured API key lifetime).
        #[arg(long)]
        expires_in: Option<i64>,
        /// The URL users reach this commons at (default: the one `serve` recorded).
        #[arg(long, env = "COMMONS_PUBLIC_URL")]
        public_url: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List a user's API keys that are neither revoked nor expired.
    List {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke an API key (by its key_id); tokens minted from it stop working too.
    Revoke {
        key_id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Start signing tokens with a new key; tokens signed earlier stay valid.
    Rotate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Stop accepting tokens and API keys signed with an older key (`kid`);
    /// running servers drop it within a minute.
    Retire {
        kid: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args).await,
        Command::CheckDictionary { path } => check_dictionary(&path),
        Command::Migrate(database) => {
            database.open().await?;
            eprintln!("database is up to date");
            Ok(())
        }
        Command::Simulate {
            dictionary,
            program,
            project,
            scale,
            format,
            invalid,
            seed,
            out,
        } => {
            let dictionary = dictionary::load(dictionary.as_deref())?;
            let format = match format {
                SimulateFormat::Tsv => crate::simulate::FileFormat::Tsv,
                SimulateFormat::Json => crate::simulate::FileFormat::Json,
            };
            let written = crate::simulate::write_files(
                &dictionary,
                &format!("{program}-{project}"),
                scale,
                seed,
                format,
                invalid,
                &out,
            )
            .with_context(|| format!("cannot write into {}", out.display()))?;
            eprintln!(
                "wrote {} records in {} files to {} (order: submission_order.txt)",
                written.records,
                written.files.len(),
                out.display()
            );
            Ok(())
        }
        Command::Backup { out, database } => {
            if out.exists() {
                bail!("{} exists already; choose a new file", out.display());
            }
            let source = database.open().await?;
            // The backup holds signing keys and password hashes: owner-only.
            {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&out)
                    .with_context(|| format!("cannot create {}", out.display()))?;
            }
            let target = Store::open(&format!("sqlite://{}", out.display())).await?;
            let summary = target.copy_from(&source).await?;
            target.close().await?;
            let rows: usize = summary.iter().map(|(_, n)| n).sum();
            eprintln!("backup of {rows} rows written to {}", out.display());
            Ok(())
        }
        Command::Restore { from, database } => {
            if !from.is_file() {
                bail!("{} is not a backup file", from.display());
            }
            let backup = Store::open(&format!("sqlite://{}", from.display())).await?;
            let target = database.open().await?;
            let summary = target.copy_from(&backup).await?;
            backup.close().await?;
            target.close().await?;
            let rows: usize = summary.iter().map(|(_, n)| n).sum();
            eprintln!("restored {rows} rows from {}", from.display());
            Ok(())
        }
        Command::MigrateData { from, to } => {
            let source = Store::open(&from)
                .await
                .with_context(|| format!("cannot open {from}"))?;
            let target = Store::open(&to)
                .await
                .with_context(|| format!("cannot open {to}"))?;
            let summary = target.copy_from(&source).await?;
            target.close().await?;
            for (table, rows) in summary {
                eprintln!("{table}: {rows} rows");
            }
            eprintln!("copied {from} into {to}");
            Ok(())
        }
        Command::Users(UsersCommand::Add {
            name,
            admin,
            password_stdin,
            database,
        }) => {
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
        Command::Users(UsersCommand::Passwd { name, database }) => {
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
        Command::Users(UsersCommand::Disable { name, database }) => {
            let store = database.open().await?;
            let user = named_user(&store, &name).await?;
            store.set_active(user.id, false).await?;
            eprintln!("user '{name}' disabled");
            Ok(())
        }
        Command::Users(UsersCommand::Enable { name, database }) => {
            let store = database.open().await?;
            let user = named_user(&store, &name).await?;
            store.set_active(user.id, true).await?;
            eprintln!("user '{name}' enabled");
            Ok(())
        }
        Command::Users(UsersCommand::EndSessions { name, database }) => {
            let store = database.open().await?;
            let user = named_user(&store, &name).await?;
            store.end_sessions(user.id).await?;
            eprintln!("every session of '{name}' has ended");
            Ok(())
        }
        Command::Users(UsersCommand::List { database }) => {
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
        Command::Authz(AuthzCommand::Import { file, database }) => {
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
        Command::Keys(KeysCommand::Create {
            name,
            expires_in,
            public_url,
            database,
        }) => {
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
        Command::Keys(KeysCommand::List { name, database }) => {
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
        Command::Keys(KeysCommand::Revoke { key_id, database }) => {
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
        Command::Keys(KeysCommand::Retire { kid, database }) => {
            let store = database.open().await?;
            if !store.retire_signing_key(&kid).await? {
                bail!("no signing key {kid} in use");
            }
            eprintln!("signing key {kid} retired; running servers drop it within a minute");
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate { database }) => {
            let store = database.open().await?;
            let kid = auth::tokens::rotate(&store).await?;
            eprintln!(
                "new signing key {kid}; running servers pick it up on their next unknown token"
            );
            Ok(())
        }
    }
}

/// How often a server reloads the signing keys in use.
const KEY_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

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

fn check_dictionary(path: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let dictionary = dictionary::load(Some(path))?;
    Validators::compile(&dictionary)?;
    let links: usize = dictionary.nodes().iter().map(|n| n.links.len()).sum();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{path}: {} node types, {links} links, depth {} (version {}, commit {})",
        dictionary.nodes().len(),
        dictionary.depth(),
        dictionary.version,
        dictionary.commit
    )?;
    for node in dictionary.nodes() {
        let parents: Vec<String> = node
            .links
            .iter()
            .map(|l| format!("{} -> {}", l.name, l.target_type))
            .collect();
        writeln!(
            out,
            "  {} [{}] {}",
            node.id,
            node.category,
            parents.join(", ")
        )?;
    }
    Ok(())
}

/// Build the application state from a dictionary and an open store.
pub async fn app_state(
    dictionary: Dictionary,
    store: Store,
    public_url: &str,
    lifetimes: Lifetimes,
    limits: Limits,
) -> anyhow::Result<AppState> {
    let validators = Validators::compile(&dictionary)?;
    let tokens = TokenService::load(&store, public_url, lifetimes).await?;
    let schema = graphql::build_schema(&dictionary, limits).map_err(anyhow::Error::msg)?;
    let introspection_gzip = graphql::introspection_gzip(&schema).await.into();
    Ok(AppState {
        dictionary: Arc::new(dictionary),
        validators,
        store: Arc::new(store),
        tokens,
        schema,
        introspection_gzip,
        graphql_limits: limits,
        login_throttle: server::Throttle::new(10, std::time::Duration::from_secs(300)),
        key_throttle: server::Throttle::new(10, std::time::Duration::from_secs(300)),
        refusal_log: server::Throttle::new(10, std::time::Duration::from_secs(300)),
        version: env!("CARGO_PKG_VERSION"),
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let dictionary = dictionary::load(args.dictionary.as_deref())?;
    let store = args.database.open().await?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen))
        .trim_end_matches('/')
        .to_string();
    store.set_setting("public_url", &public_url).await?;
    let lifetimes = Lifetimes {
        api_key: args.api_key_ttl,
        access_token: args.access_token_ttl,
    };
    let limits = Limits {
        max_depth: args.graphql_max_depth,
        max_complexity: args.graphql_max_complexity,
        timeout: std::time::Duration::from_secs(args.graphql_timeout),
        max_estimated_rows: args.graphql_max_rows,
        max_answer_bytes: args.graphql_max_answer_bytes,
    };
    let state = Arc::new(app_state(dictionary, store, &public_url, lifetimes, limits).await?);
    release_start_up_memory();
    auth::ensure_builtin_authz(&state.store).await?;
    if args.bootstrap_admin
        && let Some(created) =
            auth::bootstrap(&state.store, &state.tokens, &args.database.data_dir).await?
    {
        let path = created.credentials.display();
        eprintln!("Created the administrator 'admin'; API key written to {path}");
        eprintln!(
            "Exchange it for an access token: curl -X POST {public_url}/user/credentials/api/access_token -H 'Content-Type: application/json' -d @{path}"
        );
        eprintln!(
            "Open the portal as admin (one-time link, valid {} hours): {public_url}/user/login/link?token={}",
            auth::LOGIN_LINK_TTL / 3600,
            created.login_secret
        );
    }
    // Keys retired by `commons keys retire` (on any instance) stop verifying
    // here within a minute; unknown new keys load on first sight anyway.
    let keys = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(KEY_REFRESH);
        every.tick().await;
        loop {
            every.tick().await;
            if let Err(e) = keys.tokens.reload(&keys.store).await {
                tracing::warn!(error = %e, "could not reload the signing keys");
            }
        }
    });
    let limits = server::HttpLimits {
        max_body_bytes: args.max_body_bytes,
        body_idle_timeout: std::time::Duration::from_secs(args.body_idle_timeout),
        documents: crate::formats::DocumentLimits {
            max_document_bytes: args.max_document_bytes,
            max_cell_bytes: args.max_cell_bytes,
        },
    };
    let app = server::service(state, limits);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "Commons listening on {} (public URL {public_url})",
        args.listen
    );
    let connections = server::ConnectionLimits {
        max_connections: args.max_connections as usize,
        max_per_client: args.max_connections_per_client as usize,
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        write_timeout: std::time::Duration::from_secs(args.write_timeout),
    };
    server::serve(listener, app, connections, shutdown_signal()).await;
    Ok(())
}

/// Give the memory freed while building the schema, its introspection and the
/// validators back to the OS: mimalloc, the binary's allocator, would keep those
/// pages (a third of the idle footprint with the largest dictionary).
fn release_start_up_memory() {
    // SAFETY: mi_collect only walks mimalloc's own heaps and has no preconditions.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
