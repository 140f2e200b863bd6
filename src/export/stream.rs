//! A whole node type of a project as one response body, streamed page by
//! page: memory stays flat whatever the size.

use std::sync::Arc;

use bytes::Bytes;

use super::{Exporter, Format};
use crate::dictionary::Dictionary;
use crate::store::{Store, StoreError};

/// Stream a whole node type page by page: memory stays flat whatever the size.
/// A producer task reads the next page while this stream renders the current
/// one, so the database and the rendering work at the same time.
pub fn stream(
    store: Arc<Store>,
    dictionary: Arc<Dictionary>,
    project_id: String,
    label: String,
    format: Format,
    with_id: bool,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    enum Step {
        Header,
        Rows { first_row: bool },
        Done,
    }
    use futures::StreamExt;
    let (sink, pages) = tokio::sync::mpsc::channel::<Result<super::Page, StoreError>>(2);
    let producer_dictionary = Arc::clone(&dictionary);
    let producer_label = label.clone();
    tokio::spawn(async move {
        let pages = super::pages(store, producer_dictionary, producer_label, project_id);
        futures::pin_mut!(pages);
        loop {
            // An empty page marks the end; an error ends the stream after it.
            let page = pages.next().await.unwrap_or_else(|| Ok(Vec::new()));
            let more = matches!(&page, Ok(nodes) if !nodes.is_empty());
            if sink.send(page).await.is_err() || !more {
                return;
            }
        }
    });
    futures::stream::unfold(
        (Step::Header, pages, dictionary),
        move |(step, mut pages, dictionary)| {
            let label = label.clone();
            async move {
                let node = dictionary.node(&label)?;
                let exporter = Exporter::new(&dictionary, node, with_id);
                let first_row = match step {
                    Step::Done => return None,
                    Step::Header => {
                        let head = match format {
                            Format::Delimited(flavour) => exporter.header(flavour),
                            Format::Json => b"{\"data\": [".to_vec(),
                        };
                        let next = Step::Rows { first_row: true };
                        return Some((Ok(Bytes::from(head)), (next, pages, dictionary)));
                    }
                    Step::Rows { first_row } => first_row,
                };
                let failed = |e: StoreError| std::io::Error::other(e.to_string());
                let page = match pages.recv().await? {
                    Ok(page) => page,
                    Err(e) => return Some((Err(failed(e)), (Step::Done, pages, dictionary))),
                };
                if page.is_empty() {
                    let tail: &'static [u8] = if format == Format::Json { b"]}" } else { b"" };
                    return Some((
                        Ok(Bytes::from_static(tail)),
                        (Step::Done, pages, dictionary),
                    ));
                }
                let chunk = match format {
                    Format::Delimited(flavour) => exporter.rows(&page, flavour),
                    Format::Json => {
                        let mut out = Vec::new();
                        exporter
                            .write_objects(&page, &mut out, first_row)
                            .map(|()| out)
                    }
                };
                match chunk {
                    Ok(bytes) => {
                        let next = Step::Rows { first_row: false };
                        Some((Ok(Bytes::from(bytes)), (next, pages, dictionary)))
                    }
                    Err(e) => Some((Err(failed(e)), (Step::Done, pages, dictionary))),
                }
            }
        },
    )
    // The gzip encoder of the compression layer polls a body once more
    // after its end; `unfold` alone would panic then.
    .fuse()
}
