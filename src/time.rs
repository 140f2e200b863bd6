//! Timestamps in the one form the store keeps them: ISO-8601 with `T`,
//! microseconds and a UTC offset, as Gen3's records carry them.

/// A timestamp in the stored form.
pub fn format_timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// Now, in the stored timestamp form.
pub fn timestamp() -> String {
    format_timestamp(chrono::Utc::now())
}
