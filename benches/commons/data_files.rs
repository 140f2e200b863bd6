//! The data-file side of the benchmark (`BENCH_SECTIONS=data_files`), side
//! by side with its references in one run: a 2 GiB download from the local
//! store against nginx (Debian's package) serving the same file, a 2 GiB
//! upload against `md5sum` reading the same file, the server's memory during
//! a 5 GiB multipart upload, presigned download URLs per second with one
//! client and with 100, and 1,000 concurrent downloads.
//!
//! `BENCH_DATA_GIB` (default 2) and `BENCH_MULTIPART_GIB` (default 5) set
//! the sizes.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Server, agent, env_usize, machine, memory_kb, start_with};

const MIB: u64 = 1 << 20;

/// An nginx serving `root` on a free port, stopped when dropped.
struct Nginx {
    child: Child,
    url: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn nginx(work: &Path, root: &Path) -> Option<Nginx> {
    let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let port = super::free_port();
    let conf = work.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; worker_processes 1; pid {work}/nginx.pid; error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; tcp_nopush on; client_body_temp_path {work};
  proxy_temp_path {work}; fastcgi_temp_path {work}; uwsgi_temp_path {work}; scgi_temp_path {work};
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n",
            work = work.display(),
            root = root.display()
        ),
    )
    .unwrap();
    let child = Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let nginx = Nginx {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(nginx)
}

/// A file of `bytes` bytes of varied (not compressible) content.
fn make_file(path: &Path, bytes: u64) {
    let mut block = vec![0u8; MIB as usize];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for b in &mut block {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..bytes / MIB {
        block[0] = i as u8;
        out.write_all(&block).unwrap();
    }
    out.flush().unwrap();
}

/// Read a URL's body through, discarding it: (status, bytes, seconds).
fn read_through(url: &str) -> (u16, u64, f64) {
    let started = Instant::now();
    let mut response = agent().get(url).call().unwrap();
    let status = response.status().as_u16();
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut buffer = vec![0u8; MIB as usize];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    (status, total, started.elapsed().as_secs_f64())
}

fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / MIB as f64 / seconds
}

/// The best of `runs` timings of `f` (MB/s).
fn best(runs: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..runs).map(|_| f()).fold(0.0, f64::max)
}

fn signed_upload(server: &Server, file_name: &str) -> (String, String) {
    let answer = server.json(
        "POST",
        "/user/data/upload",
        &json!({"file_name": file_name}),
    );
    (
        answer["guid"].as_str().unwrap().to_string(),
        answer["url"].as_str().unwrap().to_string(),
    )
}

fn download_url(server: &Server, guid: &str) -> String {
    let (status, body) = server.send(
        "GET",
        &format!("/user/data/download/{guid}"),
        "",
        Vec::new(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    body["url"].as_str().unwrap().to_string()
}

/// Requests of `GET /user/data/download/<guid>` per second over `clients`
/// connections for `seconds`, measured with wrk (a C load generator: Rust
/// client threads on the same two cores measured themselves more than the
/// server), asking for gzip as the SDK does.
fn presigned_per_second(server: &Server, guid: &str, clients: usize, seconds: u64) -> f64 {
    let output = Command::new("wrk")
        .arg(format!("-t{}", clients.min(2)))
        .arg(format!("-c{clients}"))
        .arg(format!("-d{seconds}s"))
        .args(["-H", &format!("Authorization: bearer {}", server.token)])
        .args(["-H", "Accept-Encoding: gzip"])
        .arg(format!("{}/user/data/download/{guid}", server.url))
        .output()
        .expect("wrk is installed (scripts/bench.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && !text.contains("Non-2xx"),
        "wrk: {text}"
    );
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rate in wrk's output: {text}"))
}

pub fn report(report: &mut String) {
    let gib = env_usize("BENCH_DATA_GIB", 2) as u64;
    let multipart_gib = env_usize("BENCH_MULTIPART_GIB", 5) as u64;
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data-files");
    let _ = std::fs::remove_dir_all(&work);
    let www = work.join("www");
    let data_dir = work.join("commons");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    writeln!(report, "\n### Data files (local store)\n\nMachine: {}. Release build, SQLite, the local object store on the same disk as the references; one client on loopback HTTP unless said; best of three runs.\n", machine()).unwrap();
    let (server, _) = start_with(
        &data_dir,
        None,
        None,
        &[
            "--max-connections-per-client",
            "4096",
            "--max-connections",
            "8192",
        ],
    );
    let big = www.join("big.bin");
    make_file(&big, gib << 30);
    let size = gib << 30;
    let mut rows: Vec<(String, String, String, String)> = Vec::new();

    // Upload against md5sum reading the same file.
    let md5sum = best(3, || {
        let started = Instant::now();
        let status = Command::new("md5sum")
            .arg(&big)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        mb_per_s(size, started.elapsed().as_secs_f64())
    });
    let mut guid = String::new();
    let upload = best(3, || {
        let (new_guid, url) = signed_upload(&server, "big.bin");
        let mut file = std::fs::File::open(&big).unwrap();
        let started = Instant::now();
        let reply = agent()
            .put(&url)
            .header("Content-Length", &size.to_string())
            .send(ureq::SendBody::from_reader(&mut file))
            .unwrap();
        assert_eq!(reply.status().as_u16(), 200);
        let seconds = started.elapsed().as_secs_f64();
        if !guid.is_empty() {
            let _ = server.send("DELETE", &format!("/user/data/{guid}"), "", Vec::new());
        }
        guid = new_guid;
        mb_per_s(size, seconds)
    });
    rows.push((
        format!(
            "{gib} GiB upload (PUT to a signed URL; size, MD5 and SHA-256 computed while writing)"
        ),
        format!("{upload:.0} MB/s"),
        format!("`md5sum` of the file: {md5sum:.0} MB/s"),
        format!("{:.0}% (target ≥ 80%)", 100.0 * upload / md5sum),
    ));

    // Download against nginx serving the same file.
    let url = download_url(&server, &guid);
    let commons_rate = best(3, || {
        let (status, bytes, seconds) = read_through(&url);
        assert_eq!((status, bytes), (200, size));
        mb_per_s(bytes, seconds)
    });
    match nginx(&work, &www) {
        Some(nginx) => {
            let nginx_rate = best(3, || {
                let (status, bytes, seconds) = read_through(&format!("{}/big.bin", nginx.url));
                assert_eq!((status, bytes), (200, size));
                mb_per_s(bytes, seconds)
            });
            rows.push((
                format!("{gib} GiB download (GET of a signed URL)"),
                format!("{commons_rate:.0} MB/s"),
                format!("nginx, sendfile on: {nginx_rate:.0} MB/s"),
                format!("{:.0}% (target ≥ 90%)", 100.0 * commons_rate / nginx_rate),
            ));
        }
        None => rows.push((
            format!("{gib} GiB download (GET of a signed URL)"),
            format!("{commons_rate:.0} MB/s"),
            "(not run: nginx missing; apt-get install nginx-light)".into(),
            "-".into(),
        )),
    }
    let _ = std::fs::remove_file(&big);

    // Memory during a multipart upload of 5 MiB parts.
    let pid = server.child.id();
    let baseline = memory_kb(pid).0;
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(memory_kb(pid).0, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let init = server.json(
        "POST",
        "/user/data/multipart/init",
        &json!({"file_name": "huge.bin"}),
    );
    let (mp_guid, upload_id) = (
        init["guid"].as_str().unwrap().to_string(),
        init["uploadId"].as_str().unwrap().to_string(),
    );
    let key = format!("{mp_guid}/huge.bin");
    let part = vec![7u8; (5 * MIB) as usize];
    let parts = (multipart_gib << 30) / (5 * MIB);
    let started = Instant::now();
    let mut etags = Vec::new();
    for number in 1..=parts {
        let answer = server.json(
            "POST",
            "/user/data/multipart/upload",
            &json!({"key": key, "uploadId": upload_id, "partNumber": number}),
        );
        let reply = agent()
            .put(answer["presigned_url"].as_str().unwrap())
            .send(&part[..])
            .unwrap();
        assert_eq!(reply.status().as_u16(), 200);
        let etag = reply
            .headers()
            .get("etag")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        etags.push(json!({"PartNumber": number, "ETag": etag}));
    }
    let parts_done = started.elapsed().as_secs_f64();
    server.json(
        "POST",
        "/user/data/multipart/complete",
        &json!({"key": key, "uploadId": upload_id, "parts": etags}),
    );
    let total = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let growth_mb = (peak.load(Ordering::Relaxed).saturating_sub(baseline)) as f64 / 1024.0;
    rows.push((
        format!("{multipart_gib} GiB multipart upload ({parts} parts of 5 MiB, then complete)"),
        format!(
            "parts {:.0} MB/s, complete {:.1} s; server memory growth {growth_mb:.1} MB",
            mb_per_s(parts * 5 * MIB, parts_done),
            total - parts_done
        ),
        "-".into(),
        format!(
            "target < 64 MB: {}",
            if growth_mb < 64.0 { "met" } else { "NOT met" }
        ),
    ));
    let _ = server.send("DELETE", &format!("/user/data/{mp_guid}"), "", Vec::new());

    // Presigned URLs per second.
    let (small_guid, small_url) = signed_upload(&server, "small.bin");
    let small = vec![3u8; MIB as usize];
    assert_eq!(
        agent()
            .put(&small_url)
            .send(&small[..])
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    for clients in [1, 100] {
        let rate = presigned_per_second(&server, &small_guid, clients, 5);
        rows.push((
            format!("presigned download URLs, {clients} connection(s) (wrk)"),
            format!("{rate:.0} /s"),
            "-".into(),
            format!(
                "target ≥ 10,000/s: {}",
                if rate >= 10_000.0 { "met" } else { "NOT met" }
            ),
        ));
    }

    // 1,000 concurrent downloads of a 1 MiB object.
    let failures = Arc::new(AtomicU64::new(0));
    let server_errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..1000)
        .map(|_| {
            let url = download_url(&server, &small_guid);
            let (failures, server_errors) = (failures.clone(), server_errors.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || match agent().get(&url).call() {
                    Ok(mut reply) => {
                        let status = reply.status().as_u16();
                        let body = reply.body_mut().with_config().limit(u64::MAX).read_to_vec();
                        if status >= 500 {
                            server_errors.fetch_add(1, Ordering::Relaxed);
                        } else if status != 200 || body.map_or(true, |b| b.len() != MIB as usize) {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .unwrap()
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    rows.push((
        "1,000 concurrent downloads of 1 MiB".into(),
        format!(
            "{:.2} s; {} 5xx, {} other failures",
            started.elapsed().as_secs_f64(),
            server_errors.load(Ordering::Relaxed),
            failures.load(Ordering::Relaxed)
        ),
        "-".into(),
        format!(
            "target no 5xx: {}",
            if server_errors.load(Ordering::Relaxed) == 0 {
                "met"
            } else {
                "NOT met"
            }
        ),
    ));

    writeln!(
        report,
        "| measure | Commons | reference | ratio / target |\n|---|---|---|---|"
    )
    .unwrap();
    for (what, value, reference, ratio) in rows {
        writeln!(report, "| {what} | {value} | {reference} | {ratio} |").unwrap();
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
}
