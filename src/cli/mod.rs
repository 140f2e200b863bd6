//! The `commons` command line: the composition root that reads flags and
//! environment variables, opens the store and starts the server or runs an
//! administrative command against the same database.

mod admin;
mod serve;

pub use serve::app_state;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::auth::{Lifetimes, TokenService};
use crate::dictionary::{self};
use crate::graphql::Limits;
use crate::server::ConnectionLimits;
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
    Serve(Box<ServeArgs>),
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
    /// Import or export the file index as an object manifest.
    #[command(subcommand)]
    Index(IndexCommand),
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
    /// Prefix of the dids the file index mints (indexd's DEFAULT_PREFIX,
    /// e.g. `dg.1234/`); none by default.
    #[arg(long, env = "COMMONS_INDEX_PREFIX", default_value = "")]
    index_prefix: String,
    #[command(flatten)]
    storage: StorageArgs,
    /// PEM certificate chain: serve HTTPS (with --tls-key) instead of HTTP.
    #[arg(long, env = "COMMONS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "COMMONS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log lines as text, or as one JSON object per line.
    #[arg(long, env = "COMMONS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve `/metrics` on this address instead of the main listener.
    #[arg(long, env = "COMMONS_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// On SIGTERM or Ctrl-C, how long requests in flight may take to finish
    /// before their connections are closed, in seconds.
    #[arg(long, env = "COMMONS_SHUTDOWN_TIMEOUT", default_value_t = ConnectionLimits::default().shutdown_timeout.as_secs())]
    shutdown_timeout: u64,
}

/// Where data files' bytes go.
#[derive(Args, Clone)]
struct StorageArgs {
    /// A folder, or an S3-compatible bucket as s3://bucket/prefix; repeat
    /// for several (the first is the default, an upload's `bucket` picks
    /// another; a folder is named `local`). Default: <data-dir>/objects.
    #[arg(long = "storage", env = "COMMONS_STORAGE", value_delimiter = ',')]
    locations: Vec<String>,
    /// URL of the S3-compatible service (default: AWS's, by region).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    s3_endpoint: Option<String>,
    /// Region the S3 URLs are signed for.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// Name the bucket in the URL's path rather than its host (most
    /// S3-compatible services need it).
    #[arg(long, env = "COMMONS_S3_PATH_STYLE")]
    s3_path_style: bool,
}

impl StorageArgs {
    fn config(&self) -> crate::storage::StorageConfig {
        crate::storage::StorageConfig {
            locations: self.locations.clone(),
            s3: crate::storage::S3Settings {
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                path_style: self.s3_path_style,
            },
        }
    }
}

/// How `serve` writes its log.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
enum IndexCommand {
    /// Register the files of a manifest (the TSV of `gen3 objects manifest
    /// publish`: guid, md5, size, acl, authz, urls, file_name, prev_guid),
    /// all of it or nothing; rows already indexed with the same md5 and
    /// size get the manifest's urls, acl, authz and file name.
    Import {
        /// The manifest (`.csv` is read comma-separated, anything else as TSV).
        manifest: PathBuf,
        /// Prefix of the dids minted for rows without a guid (e.g. `dg.1234/`).
        #[arg(long, env = "COMMONS_INDEX_PREFIX", default_value = "")]
        index_prefix: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Write every indexed file as a manifest that `import` reads back.
    Export {
        /// The file to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
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
    // A command that took access away ends once running servers have seen it.
    match runtime.block_on(crate::store::restrictions_settled(run(cli.command))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::serve(*args).await,
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
        Command::Users(command) => admin::users(command).await,
        Command::Authz(command) => admin::authz(command).await,
        Command::Keys(command) => admin::keys(command).await,
        Command::Index(command) => admin::index(command).await,
    }
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
