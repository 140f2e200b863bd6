//! `commons serve`: the application state built once from the dictionary
//! and the store (with the watch that keeps verified callers and signing
//! keys current), the server with its limits and a graceful shutdown.

use std::sync::Arc;

use anyhow::Context;

use super::*;
use crate::auth::{self, Lifetimes, TokenService};
use crate::dictionary::{self, Dictionary};
use crate::graphql::{self, Limits};
use crate::server::{self, AppState};
use crate::store::Store;
use crate::validate::Validators;

/// Build the application state from a dictionary and an open store.
pub async fn app_state(
    dictionary: Dictionary,
    store: Store,
    public_url: &str,
    lifetimes: Lifetimes,
    limits: Limits,
    storage: &crate::storage::StorageConfig,
) -> anyhow::Result<AppState> {
    let objects = storage.open(&object_url_secret(&store).await?, public_url)?;
    let validators = Validators::compile(&dictionary)?;
    let tokens = TokenService::load(&store, public_url, lifetimes).await?;
    let schema = graphql::build_schema(&dictionary, limits).map_err(anyhow::Error::msg)?;
    let introspection_gzip = graphql::introspection_gzip(&schema).await.into();
    let store = Arc::new(store);
    let tokens = Arc::new(tokens);
    let callers = Arc::new(auth::VerifiedCallers::default());
    auth::VerifiedCallers::watch(&callers, store.clone(), tokens.clone());
    Ok(AppState {
        dictionary: Arc::new(dictionary),
        validators,
        index_creates: crate::file_index::CreateQueue::start(store.clone()),
        store,
        tokens,
        callers,
        schema,
        introspection_gzip,
        graphql_limits: limits,
        // Ten password guesses per name, then one every 30 seconds; a
        // hundred logins per address, then one a second (a proxy's users
        // share one).
        logins_by_name: server::RateLimit::new(10, std::time::Duration::from_secs(300)),
        logins_by_address: server::RateLimit::new(100, std::time::Duration::from_secs(100)),
        failed_exchanges: server::RateLimit::new(10, std::time::Duration::from_secs(300)),
        refusal_log: server::RateLimit::new(10, std::time::Duration::from_secs(300)),
        index_prefix: String::new(),
        objects,
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// The key of the object store's signed URLs, made on first use and kept
/// in the database: every instance of the commons signs alike.
async fn object_url_secret(store: &Store) -> anyhow::Result<Vec<u8>> {
    const SETTING: &str = "object_url_secret";
    if store.setting(SETTING).await?.is_none() {
        store
            .set_setting(SETTING, &hex::encode(rand::random::<[u8; 32]>()))
            .await?;
    }
    // Read back: of two instances starting at once, the last write counts.
    let secret = store.setting(SETTING).await?.unwrap_or_default();
    hex::decode(secret).context("the object URL secret in the database is not hex")
}

pub(super) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    // Colours only on a terminal: escape codes in a log file hide its text.
    let log = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    match args.log_format {
        super::LogFormat::Text => log.init(),
        super::LogFormat::Json => log.json().with_current_span(true).init(),
    }
    let metrics = server::metrics();
    tokio::spawn(async move {
        // Histograms keep their samples until drained: drain them between scrapes.
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            metrics.run_upkeep();
        }
    });
    // A bad certificate stops the start before anything else is opened.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(server::tls_config(cert, key)?),
        _ => None,
    };
    let dictionary = dictionary::load(args.dictionary.as_deref())?;
    let store = args.database.open().await?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| {
            let scheme = if args.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", args.listen)
        })
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
    let mut storage = args.storage.config();
    if storage.locations.is_empty() {
        let default = args.database.data_dir.join("objects");
        storage.locations.push(default.display().to_string());
    }
    let mut state = app_state(dictionary, store, &public_url, lifetimes, limits, &storage).await?;
    state.index_prefix = args.index_prefix.clone();
    let state = Arc::new(state);
    release_start_up_memory();
    auth::ensure_builtin_authz(&state.store).await?;
    if args.bootstrap_admin
        && let Some(created) =
            auth::bootstrap(&state.store, &state.tokens, &args.database.data_dir).await?
    {
        // Log events, not bare lines: with `--log-format json` every line
        // of the server's output is a JSON object.
        let path = created.credentials.display();
        tracing::info!("Created the administrator 'admin'; API key written to {path}");
        tracing::info!(
            "Exchange it for an access token: curl -X POST {public_url}/user/credentials/api/access_token -H 'Content-Type: application/json' -d @{path}"
        );
        tracing::info!(
            "Open the portal as admin (one-time link, valid {} hours): {public_url}/user/login/link?token={}",
            auth::LOGIN_LINK_TTL / 3600,
            created.login_secret
        );
    }
    let options = server::HttpOptions {
        metrics_route: args.metrics_listen.is_none(),
        max_body_bytes: args.max_body_bytes,
        body_idle_timeout: std::time::Duration::from_secs(args.body_idle_timeout),
        documents: crate::formats::DocumentLimits {
            max_document_bytes: args.max_document_bytes,
            max_cell_bytes: args.max_cell_bytes,
        },
    };
    if let Some(address) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} for metrics"))?;
        tracing::info!("Metrics at http://{address}/metrics");
        let metrics = server::metrics_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, metrics).await {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
    let app = server::service(state.clone(), options);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(
        "Commons listening on {} (public URL {public_url})",
        args.listen
    );
    let connections = server::ConnectionLimits {
        max_connections: args.max_connections as usize,
        max_per_client: args.max_connections_per_client as usize,
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        write_timeout: std::time::Duration::from_secs(args.write_timeout),
        shutdown_timeout: std::time::Duration::from_secs(args.shutdown_timeout),
    };
    server::serve(listener, app, connections, tls, shutdown_signal()).await;
    // Every request has finished or been cut off: nothing writes any more.
    state.store.close().await?;
    tracing::info!("database closed; stopped");
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
