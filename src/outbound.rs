//! The HTTP client for the few requests Commons itself sends (a dictionary
//! by URL, an S3 bucket's multipart and metadata calls), on the binary's one
//! TLS crypto provider: aws-lc-rs, as for PostgreSQL and tokens. ureq would
//! otherwise bring ring along.

/// A blocking client. With `statuses_as_errors` off, 4xx and 5xx answers
/// come back as responses, for callers that read S3's error bodies.
pub fn agent(statuses_as_errors: bool) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(statuses_as_errors)
        .build()
        .into()
}
