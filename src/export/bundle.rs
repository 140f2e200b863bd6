//! Several exported files in one download, as sheepdog bundles them.

use std::io::Write;

/// A gzipped tar archive of `files` (name, contents).
pub fn tar_gz(files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(crate::store::now_unix().max(0) as u64);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes.as_slice())?;
    }
    let mut encoder = builder.into_inner()?;
    encoder.flush()?;
    encoder.finish()
}
