//! End-to-end benchmark: starts the release `commons serve` on SQLite and on
//! PostgreSQL, loads a generated project over loopback HTTP and measures
//! ingest, GraphQL latency, export throughput, start-up and memory, plus
//! PostgreSQL's own COPY rates as physical references. Writes a Markdown
//! report to `target/benchmarks.md` (`scripts/bench.sh` puts it in BENCHMARKS.md).
//!
//! `BENCH_SUBJECTS` (default 10000) sets the size: that many subjects and
//! aliquots, ten times as many samples. `BENCH_SIM_SCALES` sets the sizes of
//! the simulated datasets ingested next, and `BENCH_BIG_NODE` (default
//! 1,000,000) the subjects of a last project, ingested in one request and
//! exported whole. `BENCH_SECTIONS` picks among `metadata`, `file_index`
//! and `data_files` (all by default; the last is in `commons/data_files.rs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "commons/data_files.rs"]
mod data_files;

const PROJECT: &str = "bench";
const PROGRAM: &str = "perf";

struct Server {
    child: Child,
    url: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(1800)))
        .build()
        .into()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kilobytes of a process's resident memory: (current, peak).
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn start(
    data_dir: &Path,
    database_url: Option<&str>,
    dictionary: Option<&Path>,
) -> (Server, Duration) {
    start_with(data_dir, database_url, dictionary, &[])
}

/// [`start`] with more `serve` arguments.
fn start_with(
    data_dir: &Path,
    database_url: Option<&str>,
    dictionary: Option<&Path>,
    extra: &[&str],
) -> (Server, Duration) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_commons"));
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--public-url",
            &url,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        // As in production: the access log on (a line per request, to a
        // file) and the metrics recorded.
        .env("RUST_LOG", "info,sqlx=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data_dir.join("server.log")).expect("the server's log file"));
    if let Some(db) = database_url {
        command.args(["--database-url", db]);
    }
    if let Some(d) = dictionary {
        command.arg("--dictionary").arg(d);
    }
    command.args(extra);
    let started = Instant::now();
    let child = command.spawn().unwrap();
    while agent()
        .get(format!("{url}/_status"))
        .call()
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let startup = started.elapsed();
    let credentials = std::fs::read_to_string(data_dir.join("credentials.json")).unwrap();
    let mut reply = agent()
        .post(format!("{url}/user/credentials/api/access_token"))
        .header("Content-Type", "application/json")
        .send(credentials)
        .unwrap();
    let body: Value = serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap();
    let token = body["access_token"].as_str().unwrap().to_string();
    (Server { child, url, token }, startup)
}

impl Server {
    fn send(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let agent = agent();
        let url = format!("{}{path}", self.url);
        let auth = format!("bearer {}", self.token);
        let mut reply = match method {
            "GET" => agent.get(&url).header("Authorization", &auth).call(),
            "POST" => agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", content_type)
                .send(body),
            _ => agent
                .put(&url)
                .header("Authorization", &auth)
                .header("Content-Type", content_type)
                .send(body),
        }
        .unwrap();
        let status = reply.status().as_u16();
        let bytes = reply
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .unwrap();
        (status, bytes)
    }

    fn json(&self, method: &str, path: &str, body: &Value) -> Value {
        let (status, bytes) = self.send(
            method,
            path,
            "application/json",
            body.to_string().into_bytes(),
        );
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(
            status < 300,
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
        );
        value
    }

    fn graphql(&self, query: &str) -> Value {
        self.json(
            "POST",
            "/api/v0/submission/graphql",
            &json!({"query": query}),
        )
    }

    /// A project of the benchmark's program; returns its submission path.
    fn create_project(&self, code: &str) -> String {
        self.json(
            "PUT",
            &format!("/api/v0/submission/{PROGRAM}"),
            &json!({"type": "project", "code": code, "name": code, "dbgap_accession_number": code}),
        );
        format!("/api/v0/submission/{PROGRAM}/{code}")
    }

    fn memory_kb(&self) -> (u64, u64) {
        memory_kb(self.child.id())
    }

    /// Peak memory growth (MB) over the current resident size while `f` runs:
    /// the kernel's high-water mark is reset first (`clear_refs` 5).
    fn peak_growth_mb(&self, f: impl FnOnce()) -> f64 {
        let pid = self.child.id();
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
        let before = memory_kb(pid).0;
        f();
        memory_kb(pid).1.saturating_sub(before) as f64 / 1024.0
    }

    /// One TSV `PUT` that must succeed: its wall time and the server's peak
    /// memory growth while it ran.
    fn put_tsv_measured(&self, path: &str, body: Vec<u8>) -> (Duration, f64) {
        let mut elapsed = Duration::ZERO;
        let growth = self.peak_growth_mb(|| {
            let t = Instant::now();
            let (status, reply) = self.send("PUT", path, "text/tab-separated-values", body);
            elapsed = t.elapsed();
            assert_eq!(
                status,
                200,
                "{}",
                String::from_utf8_lossy(&reply[..reply.len().min(400)])
            );
        });
        (elapsed, growth)
    }

    /// A whole node of the project at `path` exported as `format`: wall time,
    /// size in bytes and the server's peak memory growth.
    fn export_measured(&self, path: &str, node: &str, format: &str) -> (Duration, usize, f64) {
        let t = Instant::now();
        let mut size = 0;
        let growth = self.peak_growth_mb(|| {
            let (status, bytes) = self.send(
                "GET",
                &format!("{path}/export/?node_label={node}&format={format}"),
                "",
                Vec::new(),
            );
            assert_eq!(status, 200);
            size = bytes.len();
        });
        (t.elapsed(), size, growth)
    }
}

fn tsv(rows: &[Vec<String>]) -> Vec<u8> {
    rows.iter()
        .map(|r| r.join("\t") + "\n")
        .collect::<String>()
        .into_bytes()
}

/// Percentiles (p50, p95) in milliseconds of running `f` `n` times.
fn latency(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut samples: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.95))
}

struct Figures {
    rows: Vec<(String, String)>,
}

impl Figures {
    fn add(&mut self, what: impl Into<String>, value: impl Into<String>) {
        let (what, value) = (what.into(), value.into());
        eprintln!("  {what}: {value}");
        self.rows.push((what, value));
    }
}

fn run_backend(name: &str, database_url: Option<&str>, subjects: usize) -> Figures {
    eprintln!("== {name}");
    let mut figures = Figures { rows: Vec::new() };
    let dir = tempfile::tempdir().unwrap();
    let (server, startup) = start(dir.path(), database_url, None);
    figures.add(
        "start-up (bundled dictionary, empty database)",
        format!("{:.0} ms", startup.as_secs_f64() * 1000.0),
    );
    figures.add(
        "idle memory (RSS)",
        format!("{:.1} MB", server.memory_kb().0 as f64 / 1024.0),
    );

    server.json(
        "POST",
        "/api/v0/submission/",
        &json!({"type": "program", "name": PROGRAM, "dbgap_accession_number": PROGRAM}),
    );
    let path = server.create_project(PROJECT);
    server.json(
        "PUT",
        &path,
        &json!([{"type": "study", "submitter_id": "study", "projects": {"code": PROJECT}}]),
    );

    // Ingest: subjects as one TSV request.
    let mut rows = vec![vec![
        "type".to_string(),
        "submitter_id".into(),
        "studies.submitter_id".into(),
        "cohort".into(),
    ]];
    rows.extend((0..subjects).map(|i| {
        vec![
            "subject".into(),
            format!("subject-{i:07}"),
            "study".into(),
            format!("arm-{}", i % 3),
        ]
    }));
    let body = tsv(&rows);
    let t = Instant::now();
    let (status, reply) = server.send("PUT", &path, "text/tab-separated-values", body);
    assert_eq!(
        status,
        200,
        "{}",
        String::from_utf8_lossy(&reply[..reply.len().min(400)])
    );
    figures.add(
        format!("ingest, one TSV request of {subjects} subjects"),
        format!(
            "{:.0} records/s",
            subjects as f64 / t.elapsed().as_secs_f64()
        ),
    );

    // Ingest: all samples as one TSV request, streamed through the server.
    let samples = subjects * 10;
    let mut rows = vec![vec![
        "type".to_string(),
        "submitter_id".into(),
        "subjects.submitter_id".into(),
    ]];
    rows.extend((0..samples).map(|j| {
        vec![
            "sample".into(),
            format!("sample-{j:08}"),
            format!("subject-{:07}", j % subjects),
        ]
    }));
    let body = tsv(&rows);
    drop(rows);
    let (elapsed, growth) = server.put_tsv_measured(&path, body);
    figures.add(
        format!("ingest, one TSV request of {samples} samples; peak memory growth"),
        format!(
            "{:.0} records/s; {growth:.0} MB",
            samples as f64 / elapsed.as_secs_f64()
        ),
    );

    // Ingest: aliquots as JSON batches of 5000.
    let t = Instant::now();
    for start in (0..subjects).step_by(5000) {
        let batch: Vec<Value> = (start..(start + 5000).min(subjects))
            .map(|k| {
                json!({"type": "aliquot", "submitter_id": format!("aliquot-{k:07}"),
                       "samples": {"submitter_id": format!("sample-{:08}", k * 10)}})
            })
            .collect();
        server.json("PUT", &path, &Value::Array(batch));
    }
    figures.add(
        format!("ingest, {subjects} aliquots in JSON batches of 5000"),
        format!(
            "{:.0} records/s",
            subjects as f64 / t.elapsed().as_secs_f64()
        ),
    );
    figures.add(
        "peak server memory after ingest (VmHWM)",
        format!("{:.0} MB", server.memory_kb().1 as f64 / 1024.0),
    );

    // GraphQL.
    let (p50, p95) = latency(20, || {
        let d = server.graphql("{ subject(first: 0) { id submitter_id } }");
        assert_eq!(d["data"]["subject"].as_array().unwrap().len(), subjects);
    });
    figures.add(
        format!("GraphQL `subject(first: 0)` ({subjects} records), p50 / p95"),
        format!("{p50:.1} / {p95:.1} ms"),
    );
    let mut listed = 0;
    let growth = server.peak_growth_mb(|| {
        let d = server.graphql("{ sample(first: 0) { id submitter_id } }");
        listed = d["data"]["sample"].as_array().unwrap().len();
    });
    assert_eq!(listed, samples);
    let (p50, p95) = latency(3, || {
        server.graphql("{ sample(first: 0) { id submitter_id } }");
    });
    figures.add(
        format!("GraphQL `sample(first: 0)` ({samples} records), p50 / p95; peak memory growth"),
        format!("{p50:.0} / {p95:.0} ms; {growth:.0} MB"),
    );
    let (p50, p95) = latency(50, || {
        server.graphql("{ subject(first: 100) { submitter_id samples { submitter_id aliquots { submitter_id } } } }");
    });
    figures.add(
        "GraphQL three levels, `first: 100` subjects, p50 / p95",
        format!("{p50:.1} / {p95:.1} ms"),
    );
    let (p50, p95) = latency(50, || {
        server.graphql("{ study(first: 1) { submitter_id subjects(first: 10) { submitter_id } } }");
    });
    figures.add(
        format!("GraphQL the first 10 of the study's {subjects} subjects, p50 / p95"),
        format!("{p50:.1} / {p95:.1} ms"),
    );
    let counts = "{ a: _study_count(project_id: \"perf-bench\") b: _subject_count(project_id: \"perf-bench\") \
                  c: _sample_count(project_id: \"perf-bench\") d: _aliquot_count(project_id: \"perf-bench\") }";
    let (p50, p95) = latency(50, || {
        server.graphql(counts);
    });
    figures.add(
        "GraphQL counts of every populated type in the project, p50 / p95",
        format!("{p50:.1} / {p95:.1} ms"),
    );
    // Offset paging costs grow with the offset: page through at most 100,000.
    let paged = samples.min(100_000);
    let mut pages = Vec::new();
    let t = Instant::now();
    for offset in (0..paged).step_by(1000) {
        let q = Instant::now();
        let d = server.graphql(&format!(
            "{{ sample(first: 1000, offset: {offset}) {{ submitter_id }} }}"
        ));
        assert_eq!(
            d["data"]["sample"].as_array().unwrap().len(),
            1000.min(samples - offset)
        );
        pages.push(q.elapsed().as_secs_f64() * 1000.0);
    }
    pages.sort_by(f64::total_cmp);
    figures.add(
        format!("GraphQL offset paging through {paged} samples (1000 per page)"),
        format!(
            "{:.1} s in all; page p50 {:.1} ms, p95 {:.1} ms",
            t.elapsed().as_secs_f64(),
            pages[pages.len() / 2],
            pages[(pages.len() as f64 * 0.95) as usize]
        ),
    );

    let what = format!("export {samples} samples");
    export_figures(&server, &path, ("sample", samples), &what, &mut figures);
    for scale in simulator_scales() {
        simulated_ingest(&server, scale, &mut figures);
    }
    whole_node_of(&server, database_url, big_node_rows(), &mut figures);
    figures
}

/// A node of `rows` records of the project at `path` exported whole as TSV and
/// as JSON: a figure each (rows per second, size, the server's memory growth).
fn export_figures(
    server: &Server,
    path: &str,
    (node, rows): (&str, usize),
    what: &str,
    figures: &mut Figures,
) {
    for format in ["tsv", "json"] {
        let (elapsed, size, growth) = server.export_measured(path, node, format);
        figures.add(
            format!("{what} as {format}"),
            format!(
                "{:.0} rows/s ({:.1} MB), peak memory growth {growth:.0} MB",
                rows as f64 / elapsed.as_secs_f64(),
                size as f64 / 1e6
            ),
        );
    }
}

/// `BENCH_BIG_NODE` (default 1,000,000): the subjects of the one-node project.
fn big_node_rows() -> usize {
    std::env::var("BENCH_BIG_NODE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// A node of `rows` records in a project of its own: ingested as one TSV
/// request (with the server's memory growth) and exported whole as TSV and JSON.
fn whole_node_of(server: &Server, database_url: Option<&str>, rows: usize, figures: &mut Figures) {
    let project = "bignode";
    let path = server.create_project(project);
    server.json(
        "PUT",
        &path,
        &json!([{"type": "study", "submitter_id": "big-study", "projects": {"code": project}}]),
    );
    let mut body = b"type\tsubmitter_id\tstudies.submitter_id\n".to_vec();
    for i in 0..rows {
        body.extend(format!("subject\tbig-{i:08}\tbig-study\n").into_bytes());
    }
    let (elapsed, growth) = server.put_tsv_measured(&path, body);
    figures.add(
        format!("ingest, one TSV request of {rows} subjects into a project of their own; peak memory growth"),
        format!("{:.0} records/s; {growth:.0} MB", rows as f64 / elapsed.as_secs_f64()),
    );
    if let Some(url) = database_url {
        statistics_refreshed(url);
    }
    let what = format!("export of that node ({rows} subjects)");
    export_figures(server, &path, ("subject", rows), &what, figures);
}

/// Wait until the statistics refresh that a large upload sets off on
/// PostgreSQL (`VACUUM (ANALYZE)` in the background) has finished, so that an
/// export is measured on its own: during the refresh the two share the cores
/// (300,000 subjects: 180,000 rows/s instead of 239,000).
fn statistics_refreshed(database_url: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        let started = Instant::now();
        // The refresh starts as the upload commits; give it time to show up.
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Idle for three polls in a row: nodes and edges are two statements.
        let mut idle = 0;
        while idle < 3 && started.elapsed() < Duration::from_secs(300) {
            let running: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM pg_stat_progress_vacuum WHERE datname = current_database()) \
                      + (SELECT count(*) FROM pg_stat_progress_analyze WHERE datname = current_database())",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            idle = if running == 0 { idle + 1 } else { 0 };
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// `BENCH_SIM_SCALES` (default 1000,10000,100000): records per type of the
/// simulated datasets, 11 types each, so 11,000 to 1.1 million records.
fn simulator_scales() -> Vec<usize> {
    std::env::var("BENCH_SIM_SCALES")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Ingest a dataset written by `commons simulate` for every submittable type
/// of the bundled dictionary into a project of its own: each file as one TSV
/// request, in the simulator's submission order.
fn simulated_ingest(server: &Server, scale: usize, figures: &mut Figures) {
    let project = format!("sim{scale}");
    let path = server.create_project(&project);
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_commons"))
        .args(["simulate", "--program", PROGRAM, "--project", &project])
        .args(["--scale", &scale.to_string(), "--format", "tsv", "--out"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "commons simulate failed");
    let order = std::fs::read_to_string(dir.path().join("submission_order.txt")).unwrap();
    let (mut records, mut elapsed) = (0, Duration::ZERO);
    let growth = server.peak_growth_mb(|| {
        for file in order.lines() {
            let body = std::fs::read(dir.path().join(file)).unwrap();
            records += body.iter().filter(|&&b| b == b'\n').count() - 1;
            let t = Instant::now();
            let (status, reply) = server.send("PUT", &path, "text/tab-separated-values", body);
            elapsed += t.elapsed();
            assert_eq!(
                status,
                200,
                "{file}: {}",
                String::from_utf8_lossy(&reply[..reply.len().min(400)])
            );
        }
    });
    figures.add(
        format!(
            "ingest of a simulated dataset: {records} records of {} types (`commons simulate --scale {scale}`), a TSV request per type; peak memory growth",
            order.lines().count()
        ),
        format!(
            "{:.0} records/s; {growth:.0} MB",
            records as f64 / elapsed.as_secs_f64()
        ),
    );
    // Files are named `NN_<type>.tsv`.
    let counts: Vec<String> = order
        .lines()
        .filter_map(|file| file.split_once('_'))
        .enumerate()
        .map(|(i, (_, name))| {
            let node_type = name.trim_end_matches(".tsv");
            format!("c{i}: _{node_type}_count(project_id: \"{PROGRAM}-{project}\")")
        })
        .collect();
    let query = format!("{{ {} }}", counts.join(" "));
    let (p50, p95) = latency(20, || {
        let d = server.graphql(&query);
        let answers = d["data"].as_object().unwrap();
        assert!(answers.values().all(|n| n == scale), "{d}");
    });
    figures.add(
        format!(
            "GraphQL counts of all {} types of that {records}-record project, p50 / p95",
            counts.len()
        ),
        format!("{p50:.1} / {p95:.1} ms"),
    );
}

/// Tables for [`postgres_copy_references`]: Commons' own layout, every index
/// included, and the least any graph store needs (unique node ids and natural
/// keys, each link findable from both ends), with native `uuid` keys.
const COMMONS_LAYOUT: &str = "CREATE TABLE bench_nodes (LIKE nodes INCLUDING ALL); \
     CREATE TABLE bench_edges (LIKE edges INCLUDING ALL)";
const MINIMAL_LAYOUT: &str = "CREATE TABLE bench_nodes (seq BIGINT GENERATED ALWAYS AS IDENTITY, \
       node_id UUID PRIMARY KEY, node_type TEXT NOT NULL, project_id TEXT, natural_key TEXT, props JSONB NOT NULL); \
     CREATE UNIQUE INDEX ON bench_nodes (natural_key, node_type); \
     CREATE TABLE bench_edges (src_id UUID, link TEXT, dst_id UUID, project_id TEXT, src_seq BIGINT, \
       PRIMARY KEY (src_id, link, dst_id)); \
     CREATE INDEX ON bench_edges (dst_id, link)";

/// PostgreSQL's own rates for the rows the sample upload stored, as
/// `(unindexed, Commons' layout, minimal layout)`: `COPY` of the stored
/// documents into one JSONB column without an index (the physical
/// reference), then `COPY` of the same samples and their edges, in one
/// transaction, into each layout of tables: what any ingest into that layout
/// could reach with nothing validated and no key looked up.
fn postgres_copy_references(database_url: &str, stored_samples: usize) -> [String; 3] {
    use futures::TryStreamExt;
    use sqlx::Connection;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        let samples = format!("n.project_id = '{PROGRAM}-{PROJECT}' AND n.node_type = 'sample'");
        let mut copy_out = async |query: String| -> Vec<u8> {
            let chunks: Vec<_> = conn
                .copy_out_raw(&format!("COPY ({query}) TO STDOUT"))
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            chunks.concat()
        };
        let documents = copy_out(format!("SELECT n.props FROM nodes n WHERE {samples} ORDER BY n.seq")).await;
        let nodes = copy_out(format!(
            "SELECT n.node_id, n.node_type, n.project_id, n.natural_key, n.props FROM nodes n WHERE {samples} ORDER BY n.seq"
        ))
        .await;
        let edges = copy_out(format!(
            "SELECT e.src_id, e.link, e.dst_id, e.project_id, e.src_seq \
             FROM edges e JOIN nodes n ON n.seq = e.src_seq WHERE {samples} ORDER BY e.src_seq"
        ))
        .await;
        let rows = nodes.iter().filter(|b| **b == b'\n').count();
        assert_eq!(rows, stored_samples, "the samples the upload stored");

        sqlx::query("CREATE TABLE bench_copy (doc JSONB)").execute(&mut conn).await.unwrap();
        let t = Instant::now();
        let mut copy = conn.copy_in_raw("COPY bench_copy (doc) FROM STDIN").await.unwrap();
        copy.send(documents).await.unwrap();
        copy.finish().await.unwrap();
        let unindexed = rows as f64 / t.elapsed().as_secs_f64();
        sqlx::query("DROP TABLE bench_copy").execute(&mut conn).await.unwrap();

        let mut into_layout = async |layout: &str| -> f64 {
            sqlx::raw_sql(layout).execute(&mut conn).await.unwrap();
            let t = Instant::now();
            let mut tx = conn.begin().await.unwrap();
            for (table, data) in [
                ("bench_nodes (node_id, node_type, project_id, natural_key, props)", &nodes),
                ("bench_edges (src_id, link, dst_id, project_id, src_seq)", &edges),
            ] {
                let mut copy = tx.copy_in_raw(&format!("COPY {table} FROM STDIN")).await.unwrap();
                copy.send(data.as_slice()).await.unwrap();
                copy.finish().await.unwrap();
            }
            tx.commit().await.unwrap();
            let rate = rows as f64 / t.elapsed().as_secs_f64();
            sqlx::query("DROP TABLE bench_nodes, bench_edges").execute(&mut conn).await.unwrap();
            rate
        };
        let commons = into_layout(COMMONS_LAYOUT).await;
        let minimal = into_layout(MINIMAL_LAYOUT).await;
        [
            format!("{unindexed:.0} rows/s"),
            format!("{commons:.0} records/s"),
            format!("{minimal:.0} records/s"),
        ]
    })
}

fn postgres_database() -> Option<(String, String, String)> {
    let admin = std::env::var("COMMONS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("commons_bench_{}", std::process::id());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .ok()?;
            Some(())
        })
        .map(|()| {
            let base = admin
                .rsplit_once('/')
                .map_or(admin.as_str(), |(b, _)| b)
                .to_string();
            (admin.clone(), name.clone(), format!("{base}/{name}"))
        })
}

fn drop_database(admin: &str, name: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    });
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0.0, |kb| kb as f64 / 1024.0 / 1024.0);
    format!("{cores} cores ({cpu}), {mem:.0} GiB memory")
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` builds this
    // target too, and must not run a long benchmark in a debug build.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/commons.rs runs with `cargo bench` (or scripts/bench.sh)");
        return;
    }
    let subjects: usize = std::env::var("BENCH_SUBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut report = String::new();
    let sections =
        std::env::var("BENCH_SECTIONS").unwrap_or_else(|_| "metadata,file_index,data_files".into());
    if sections.split(',').any(|s| s == "metadata") {
        metadata_report(&mut report, subjects);
    }
    if sections.split(',').any(|s| s == "file_index") {
        file_index_report(&mut report);
    }
    if sections.split(',').any(|s| s == "data_files") {
        data_files::report(&mut report);
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/benchmarks.md");
    std::fs::write(&out, &report).unwrap();
    println!("{report}");
    eprintln!("report written to {}", out.display());
}

/// The metadata side: ingest, GraphQL, export, start-up and memory.
fn metadata_report(report: &mut String, subjects: usize) {
    writeln!(report, "Machine: {}. Dataset: bundled dictionary; 1 study, {subjects} subjects, {} samples, {subjects} aliquots; one client on loopback HTTP; release build.\n", machine(), subjects * 10).unwrap();

    let sqlite = run_backend("SQLite", None, subjects);
    let postgres = postgres_database().map(|(admin, name, url)| {
        let figures = run_backend("PostgreSQL", Some(&url), subjects);
        let copies = postgres_copy_references(&url, subjects * 10);
        drop_database(&admin, &name);
        (figures, copies)
    });

    writeln!(report, "| measure | SQLite | PostgreSQL |\n|---|---|---|").unwrap();
    for (i, (what, value)) in sqlite.rows.iter().enumerate() {
        let pg = postgres
            .as_ref()
            .map_or("(not run: no PostgreSQL)".to_string(), |(f, _)| {
                f.rows[i].1.clone()
            });
        writeln!(report, "| {what} | {value} | {pg} |").unwrap();
    }
    if let Some((_, [unindexed, commons, minimal])) = &postgres {
        writeln!(report, "| physical reference: PostgreSQL `COPY` of the {} stored sample documents into one JSONB column | | {unindexed} |", subjects * 10).unwrap();
        writeln!(report, "| PostgreSQL `COPY` of those samples and their edges into tables laid out and indexed like `nodes` and `edges` (a record: a sample and its edge) | | {commons} |").unwrap();
        writeln!(report, "| PostgreSQL `COPY` of the same into a minimal layout: `uuid` node ids and natural keys unique, each link indexed from both ends | | {minimal} |").unwrap();
    }

    let gdc = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/dictionaries/bdcat_gtex");
    if gdc.is_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (server, startup) = start(dir.path(), None, Some(&gdc));
        writeln!(
            report,
            "\nStart-up with the largest reference dictionary (bdcat_gtex) on SQLite: {:.0} ms; idle memory {:.1} MB.",
            startup.as_secs_f64() * 1000.0,
            server.memory_kb().0 as f64 / 1024.0
        )
        .unwrap();
    }
}

/// The file index (#23): a manifest published over HTTP and imported by the
/// CLI, `start` paging over the whole index, lookups by hash and size.
fn file_index_report(report: &mut String) {
    let manifest_rows = env_usize("BENCH_INDEX_MANIFEST", 100_000);
    let total = env_usize("BENCH_INDEX_RECORDS", 1_000_000);
    writeln!(report, "\n### File index\n\nMachine: {}. A manifest of {manifest_rows} rows (guid, md5, size, acl, authz, two urls, file name); an index of {total} records for paging and lookups; one client on loopback HTTP; release build.\n", machine()).unwrap();
    let sqlite = file_index_figures("SQLite", None, manifest_rows, total);
    let postgres = postgres_database().map(|(admin, name, url)| {
        let figures = file_index_figures("PostgreSQL", Some(&url), manifest_rows, total);
        drop_database(&admin, &name);
        figures
    });
    writeln!(report, "| measure | SQLite | PostgreSQL |\n|---|---|---|").unwrap();
    for (i, (what, value)) in sqlite.rows.iter().enumerate() {
        let pg = postgres
            .as_ref()
            .map_or("(not run: no PostgreSQL)".to_string(), |f| {
                f.rows[i].1.clone()
            });
        writeln!(report, "| {what} | {value} | {pg} |").unwrap();
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A manifest TSV of `rows` files whose guids start at `first`.
fn manifest(first: usize, rows: usize) -> String {
    let mut out = String::from("guid\tmd5\tsize\tacl\tauthz\turls\tfile_name\n");
    for i in first..first + rows {
        writeln!(
            out,
            "{}\t{}\t{}\tphs001\t/programs/{PROGRAM}/projects/{PROJECT}\ts3://bucket/{i}.cram gs://bucket/{i}.cram\tfile-{i}.cram",
            guid(i),
            md5(i),
            1000 + i
        )
        .unwrap();
    }
    out
}

/// The guid of file `i`: scattered like random UUIDs (a manifest's guids
/// come in no order), but reproducible.
fn guid(i: usize) -> String {
    let h = (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    let hex = format!("{h:032x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..]
    )
}

/// The md5 of file `i`.
fn md5(i: usize) -> String {
    format!(
        "{:032x}",
        (i as u128 + 7).wrapping_mul(0x2545_f491_4f6c_dd1d_9e37_79b9_7f4a_7c15)
    )
}

/// Records in the index (`_stats`).
fn index_count(server: &Server) -> usize {
    server.json("GET", "/index/_stats", &Value::Null)["fileCount"]
        .as_u64()
        .unwrap() as usize
}

/// Where the guids of records posted over HTTP begin: far above those
/// imported (0, 1, 2...), so the two never meet.
const HTTP_RECORDS: usize = 100_000_000;

/// Records created per second by wrk posting records `first`, `first + 1`...
/// over `connections` for `seconds` (counted by the index's `_stats`).
fn publish_with_wrk(
    server: &Server,
    work: &Path,
    first: usize,
    connections: usize,
    seconds: u64,
) -> f64 {
    // More rows than the run can post at 25,000 a second.
    let mut rows = String::new();
    for i in first..first + 25_000 * seconds as usize {
        let record = json!({
            "did": guid(i), "form": "object", "size": 1000 + i,
            "hashes": {"md5": md5(i)},
            "acl": ["phs001"], "authz": [format!("/programs/{PROGRAM}/projects/{PROJECT}")],
            "urls": [format!("s3://bucket/{i}.cram"), format!("gs://bucket/{i}.cram")],
            "file_name": format!("file-{i}.cram"),
        });
        writeln!(rows, "{record}").unwrap();
    }
    let rows_file = work.join(format!("publish-{first}.jsonl"));
    std::fs::write(&rows_file, rows).unwrap();
    let script = work.join("publish.lua");
    std::fs::write(&script, include_str!("commons/publish.lua")).unwrap();
    let before = index_count(server);
    let threads = connections.min(2);
    let t = Instant::now();
    let output = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(&script)
        .arg(&server.url)
        .arg("--")
        .arg(&rows_file)
        .arg(threads.to_string())
        .arg(&server.token)
        .output()
        .expect("wrk is installed (scripts/bench.sh installs it)");
    let elapsed = t.elapsed();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && !text.contains("refused") && !text.contains("Non-2xx"),
        "wrk: {text}"
    );
    let created = index_count(server) - before;
    created as f64 / elapsed.as_secs_f64()
}

fn file_index_figures(
    name: &str,
    database_url: Option<&str>,
    manifest_rows: usize,
    total: usize,
) -> Figures {
    eprintln!("== file index, {name}");
    let mut figures = Figures { rows: Vec::new() };
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start(dir.path(), database_url, None);

    // A client publishing a manifest record by record, as the SDK does:
    // `gen3 objects manifest publish` posts from 8 threads, each reusing
    // its connection; then the same from one. The client is wrk (C, see
    // publish.lua): a Rust client on the same two cores measured itself.
    let mut publish = |first: usize, connections: usize, seconds: u64| {
        let rate = publish_with_wrk(&server, dir.path(), first, connections, seconds);
        let label = match connections {
            1 => "one connection".to_string(),
            n => format!("{n} connections (as `gen3 objects manifest publish`)"),
        };
        figures.add(
            format!("`POST /index/index/` for {seconds} s, {label}, wrk"),
            format!("{rate:.0} records/s"),
        );
    };
    publish(HTTP_RECORDS, 8, 10);
    publish(2 * HTTP_RECORDS, 1, 5);

    // The same number of rows through `commons index import`, then the rest.
    let import = |first: usize, rows: usize| -> Duration {
        let path = dir.path().join(format!("manifest-{first}.tsv"));
        std::fs::write(&path, manifest(first, rows)).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_commons"));
        command
            .args(["index", "import"])
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path());
        if let Some(db) = database_url {
            command.args(["--database-url", db]);
        }
        let t = Instant::now();
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        t.elapsed()
    };
    let imported = import(0, manifest_rows);
    figures.add(
        format!("`commons index import` of a {manifest_rows}-row manifest"),
        format!(
            "{:.0} records/s ({:.1} s)",
            manifest_rows as f64 / imported.as_secs_f64(),
            imported.as_secs_f64()
        ),
    );
    let published = index_count(&server) - manifest_rows;
    let mut imported_rows = manifest_rows;
    while published + imported_rows < total {
        let rows = (total - published - imported_rows).min(500_000);
        import(imported_rows, rows);
        imported_rows += rows;
    }
    let loaded = published + imported_rows;

    // Every record, 1,024 per page, with `start` (as get_all_records pages).
    let mut pages = Vec::new();
    let mut start = String::new();
    let mut seen = 0;
    let t = Instant::now();
    loop {
        let q = Instant::now();
        let page = server.json(
            "GET",
            &format!("/index/index/?limit=1024&start={start}"),
            &Value::Null,
        );
        let records = page["records"].as_array().unwrap();
        pages.push(q.elapsed().as_secs_f64() * 1000.0);
        let Some(last) = records.last() else { break };
        start = last["did"].as_str().unwrap().to_string();
        seen += records.len();
    }
    assert_eq!(seen, loaded, "paging saw every record once");
    let ten = |slice: &[f64]| {
        let mut v = slice.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let n = pages.len() - 1;
    figures.add(
        format!("`start` paging through {loaded} records, 1,024 per page"),
        format!(
            "{:.1} s; page p50 of the first 10 {:.1} ms, middle 10 {:.1} ms, last 10 {:.1} ms",
            t.elapsed().as_secs_f64(),
            ten(&pages[..10]),
            ten(&pages[n / 2..n / 2 + 10]),
            ten(&pages[n - 10..n]),
        ),
    );

    // get_with_params: by md5 and size, as sheepdog and the SDK look files up.
    let lookups = 5_000;
    let t = Instant::now();
    let mut latencies = Vec::with_capacity(lookups);
    for k in 0..lookups {
        let i = (k * 7919) % imported_rows;
        let q = Instant::now();
        let found = server.json(
            "GET",
            &format!(
                "/index/index/?hash=md5:{}&size={}&limit=1",
                md5(i),
                1000 + i
            ),
            &Value::Null,
        );
        latencies.push(q.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(found["records"][0]["did"], guid(i));
    }
    latencies.sort_by(f64::total_cmp);
    figures.add(
        format!("`get_with_params` (md5 + size) over {loaded} records"),
        format!(
            "{:.0} lookups/s; p50 {:.2} ms, p95 {:.2} ms",
            lookups as f64 / t.elapsed().as_secs_f64(),
            latencies[lookups / 2],
            latencies[lookups * 95 / 100]
        ),
    );
    figures
}
