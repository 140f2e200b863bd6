//! Submission bodies as HTTP carries them: the media type, the spool that
//! frees the request from a slow client, and the errors Gen3 answers.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::formats::{
    Delimited, DelimitedError, DocumentLimits, JsonBodyError, parse_delimited, read_delimited,
    read_json_documents,
};
use crate::server::{ApiError, BodyLimit, SharedState, parse_json_body};
use crate::submission::{BodyCapture, ChunkSender};

// ------------------------------------------------------------------ entities

/// How a submission body is encoded (API.md §2.5): media type, parameters ignored.
pub(super) fn body_flavour(headers: &HeaderMap) -> Option<Delimited> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())?;
    match media.as_str() {
        "text/tab-separated-values" | "text/tsv" => Some(Delimited::Tsv),
        "text/csv" => Some(Delimited::Csv),
        _ => None,
    }
}

/// `Unable to parse document` / `UnicodeDecodeError` / 413 for a failed TSV/CSV read.
pub(super) fn delimited_error(e: DelimitedError, max_body_bytes: usize) -> ApiError {
    match e {
        DelimitedError::TooLarge(message) => ApiError::new(413, message),
        DelimitedError::Encoding(detail) => {
            ApiError::bad_request(format!("UnicodeDecodeError: {detail}"))
        }
        DelimitedError::Read(io) => read_error(&io, max_body_bytes),
        DelimitedError::Syntax(detail) => {
            ApiError::bad_request(format!("Unable to parse document: {detail}"))
        }
    }
}

/// A failure while reading the request body: too large, or the client went away.
pub(super) fn read_error(io: &std::io::Error, max_body_bytes: usize) -> ApiError {
    // The cause sits somewhere in the chain of boxed body errors.
    let mut causes: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = io.get_ref().map(|e| e as _);
    while let Some(error) = next {
        causes.push(error);
        next = error.source();
    }
    let timed_out = causes
        .iter()
        .any(|e| e.is::<tower_http::timeout::TimeoutError>());
    let too_large = causes
        .iter()
        .any(|e| e.is::<http_body_util::LengthLimitError>());
    if let Some(document) = causes
        .iter()
        .find_map(|e| e.downcast_ref::<crate::formats::DocumentTooLarge>())
    {
        return ApiError::new(413, document.to_string());
    }
    if timed_out {
        ApiError::new(
            408,
            "The request body stalled longer than this server waits (--body-idle-timeout); check the connection and send it again",
        )
    } else if too_large {
        ApiError::new(
            413,
            format!(
                "Request body is larger than this server accepts ({max_body_bytes} bytes); split the submission into smaller files"
            ),
        )
    } else {
        ApiError::bad_request(format!("Unable to read the request body: {io}"))
    }
}

/// The answer to a JSON body that could not be read as documents.
pub(super) fn json_error(error: JsonBodyError, max_body_bytes: usize) -> ApiError {
    match error {
        JsonBodyError::Read(io) => read_error(&io, max_body_bytes),
        JsonBodyError::Syntax(e) => ApiError::bad_request(format!("Unable to parse json: {e}")),
        JsonBodyError::ValueTooLarge { key, size, limit } => ApiError::new(
            413,
            format!(
                "Key '{key}': the value has {size} bytes, more than this server accepts \
                 in one value ({limit} bytes, --max-cell-bytes)"
            ),
        ),
        JsonBodyError::NotDocuments(kind) => ApiError::bad_request(format!(
            "JSON parsed from request is an invalid type: {kind}"
        )),
    }
}

pub(super) fn json_documents(value: Value) -> Result<Vec<Value>, ApiError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(map) => Ok(vec![Value::Object(map)]),
        other => Err(ApiError::bad_request(format!(
            "JSON parsed from request is an invalid type: {}",
            match other {
                Value::String(_) => "str",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                _ => "NoneType",
            }
        ))),
    }
}

/// The entity documents of a buffered body (programs, projects).
pub(super) fn documents(
    state: &SharedState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Value>, ApiError> {
    match body_flavour(headers) {
        Some(flavour) => parse_delimited(&state.dictionary, body, flavour)
            .map_err(|e| delimited_error(e, body.len())),
        None => json_documents(parse_json_body(body)?),
    }
}

/// The documents of a submission body, parsed in chunks on a blocking
/// thread. The body is first spooled to a temporary file: a client that sends
/// it slowly then holds nothing shared (the write lock is taken when the
/// first chunk is parsed), and the spool keeps memory flat however large it is.
/// Also returns the body as the transaction log keeps it.
pub(super) fn document_chunks(
    state: &SharedState,
    headers: &HeaderMap,
    body: Body,
    BodyLimit(limit): BodyLimit,
    documents: DocumentLimits,
) -> (mpsc::Receiver<Result<Vec<Value>, ApiError>>, BodyCapture) {
    let flavour = body_flavour(headers);
    let capture = BodyCapture::new(match flavour {
        Some(Delimited::Tsv) => "TSV",
        Some(Delimited::Csv) => "CSV",
        None => "JSON",
    });
    let kept = capture.clone();
    let dictionary = state.dictionary.clone();
    let (sender, receiver) = mpsc::channel(2);
    tokio::spawn(async move {
        let file = match spool_body(body, limit, &capture).await {
            Ok(file) => file,
            Err(e) => {
                let _ = sender.send(Err(e)).await;
                return;
            }
        };
        tokio::task::spawn_blocking(move || {
            let reader = std::io::BufReader::new(file);
            let mut chunks = ChunkSender::new(sender);
            let parsed = match flavour {
                Some(flavour) => read_delimited(&dictionary, reader, flavour, documents)
                    .and_then(|mut docs| {
                        let mut before = 0;
                        while let Some(doc) = docs.next() {
                            let consumed = docs.consumed();
                            if !chunks.push(doc?, consumed - before) {
                                break;
                            }
                            before = consumed;
                        }
                        Ok(())
                    })
                    .map_err(|e| delimited_error(e, limit)),
                None => {
                    read_json_documents(reader, documents, |doc, bytes| chunks.push(doc, bytes))
                        .map_err(|e| json_error(e, limit))
                }
            };
            chunks.finish(parsed);
        });
    });
    (receiver, kept)
}

/// Copy a request body into an unnamed temporary file (at most `limit`
/// bytes), recording it for the transaction log as it passes.
pub(super) async fn spool_body(
    body: Body,
    limit: usize,
    capture: &BodyCapture,
) -> Result<std::fs::File, ApiError> {
    use futures::StreamExt;
    use std::io::Seek;
    use tokio::io::AsyncWriteExt;
    let spool_error = |e: std::io::Error| {
        tracing::error!(error = %e, "cannot spool a request body");
        ApiError::new(
            500,
            "The server could not store the request body; try again later.",
        )
    };
    let file = tempfile::tempfile().map_err(spool_error)?;
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
    let mut frames = http_body_util::BodyStream::new(http_body_util::Limited::new(body, limit));
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| read_error(&std::io::Error::other(e), limit))?;
        if let Ok(piece) = frame.into_data() {
            capture.record(&piece);
            out.write_all(&piece).await.map_err(spool_error)?;
        }
    }
    out.flush().await.map_err(spool_error)?;
    let mut file = out.into_inner().into_std().await;
    file.rewind().map_err(spool_error)?;
    Ok(file)
}

pub(super) fn single_document_body(
    state: &SharedState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut docs = documents(state, headers, body)?;
    if body_flavour(headers).is_some() && docs.len() == 1 {
        return Ok(docs.remove(0));
    }
    if body_flavour(headers).is_some() {
        return Err(ApiError::bad_request("Expected exactly one row"));
    }
    parse_json_body(body)
}
