//! `chokepoint db` against a real PostgreSQL 15 started for the test: `initdb` into a temporary
//! folder (as the `postgres` user when the test runs as root), a free loopback port,
//! `pg_stat_statements` preloaded. A workload with one problem of each kind runs first; the
//! inspector must name them, and must not be able to write.

pub mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(program: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl Cluster {
    /// Restarts the server (fast shutdown, wait for it to accept again), as an operator would.
    fn restart(&self) {
        let restarted = as_postgres(&Path::new(PG_BIN).join("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-l"])
            .arg(self.dir.path().join("log"))
            .args(["-m", "fast", "-w", "restart"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            restarted.status.success(),
            "{}",
            String::from_utf8_lossy(&restarted.stderr)
        );
    }
    fn start() -> Cluster {
        Cluster::start_with("shared_preload_libraries = 'pg_stat_statements'\n")
    }

    /// A cluster with `extra` lines of configuration.
    fn start_with(extra: &str) -> Cluster {
        let bin = PathBuf::from(PG_BIN);
        assert!(
            bin.join("postgres").exists(),
            "PostgreSQL 15 is not installed: scripts/test installs it (testbed/testbed.sh)"
        );
        let dir = tempfile::Builder::new()
            .prefix("chokepoint-pg-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let _ = Command::new("chown").args(["postgres"]).arg(dir.path()).status();
        let data = dir.path().join("data");
        let status = as_postgres(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .output()
            .expect("initdb runs");
        assert!(
            status.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        std::fs::write(
            data.join("postgresql.auto.conf"),
            format!(
                "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
                 fsync = off\nautovacuum = off\n{extra}",
                dir.path().display()
            ),
        )
        .expect("config");
        let started = as_postgres(&bin.join("pg_ctl"))
            .args(["-D"])
            .arg(&data)
            .args(["-l"])
            .arg(dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            started.status.success(),
            "pg_ctl: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        Cluster { dir, port }
    }

    fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&Path::new(PG_BIN).join("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// A current-thread runtime for the test's own sessions.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// An ordinary (writable) session, as the application's.
async fn app_session(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// Runs the workload over an ordinary (writable) session: an N+1 by foreign key, an unbounded
/// SELECT, and a slow statement.
/// Runs `schema` as the application's role, then resets the statement statistics, so that
/// only what the test does next is counted.
fn seed(cluster: &Cluster, runtime: &tokio::runtime::Runtime, schema: &str) {
    runtime.block_on(async {
        let client = app_session(&cluster.url()).await;
        client.batch_execute(schema).await.expect("schema");
        client
            .batch_execute("SELECT pg_stat_statements_reset();")
            .await
            .expect("reset");
    });
}

fn workload(url: &str) {
    let runtime = runtime();
    runtime.block_on(async {
        let client = app_session(url).await;
        client
            .batch_execute(
                "CREATE EXTENSION pg_stat_statements;
                 CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL);
                 CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint NOT NULL, sku text NOT NULL);
                 CREATE TABLE events (id bigint PRIMARY KEY, payload text NOT NULL);
                 INSERT INTO orders SELECT g, g % 100 FROM generate_series(1, 2000) g;
                 INSERT INTO items SELECT g, g, 'SKU-' || g FROM generate_series(1, 2000) g;
                 CREATE INDEX ON items (order_id);
                 INSERT INTO events SELECT g, md5(g::text) FROM generate_series(1, 5000) g;
                 SELECT pg_stat_statements_reset();",
            )
            .await
            .expect("schema");
        let lookup = client
            .prepare("SELECT id, sku FROM items WHERE order_id = $1")
            .await
            .expect("prepare");
        for order_id in 1..=2000i64 {
            client.query(&lookup, &[&order_id]).await.expect("lookup");
        }
        for _ in 0..3 {
            client
                .query("SELECT id, payload FROM events", &[])
                .await
                .expect("unbounded");
        }
        for _ in 0..2 {
            client.query("SELECT pg_sleep(0.15)", &[]).await.expect("slow");
        }
    });
}

#[test]
fn names_the_n_plus_one_the_unbounded_and_the_slow_statement() {
    let cluster = Cluster::start();
    workload(&cluster.url());
    let report = inspect(&cluster.url());
    let found: Vec<(String, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["detector"].as_str().expect("id").to_owned(),
                f["location"].as_str().expect("location").to_owned(),
            )
        })
        .collect();
    let has = |id: &str, fragment: &str| found.iter().any(|(d, l)| d == id && l.contains(fragment));
    assert!(has("n-plus-one", "FROM items WHERE order_id = ?"), "{found:#?}");
    assert!(has("unbounded-result", "FROM events"), "{found:#?}");
    assert!(has("slow-query", "pg_sleep"), "{found:#?}");
    assert_eq!(report["database"]["extensions"][0], "pg_stat_statements");
    let warnings = common::notes(&report, "warning");
    assert!(
        warnings.iter().any(|w| w.contains("hypopg")),
        "the missing HypoPG is said: {warnings:?}"
    );
}

#[test]
fn the_inspector_cannot_write() {
    let cluster = Cluster::start();
    // libpq's environment variables stand for the URL.
    let output = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["db", "--format", "json"])
        .env_remove("DATABASE_URL")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", cluster.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", "postgres")
        .output()
        .expect("chokepoint runs");
    // The missing extensions are warnings, not errors: what could be read is reported.
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = succeeded(output);
    assert_eq!(report["database"]["database"], "postgres");
    assert!(
        stderr.contains("extension pg_stat_statements missing — "),
        "{stderr}"
    );
    let runtime = runtime();
    runtime.block_on(async {
        let client = chokepoint_db_connect(&cluster.url()).await;
        let read_only: String = client
            .query_one("SHOW transaction_read_only", &[])
            .await
            .expect("show")
            .get(0);
        assert_eq!(read_only, "on");
        let error = client
            .batch_execute("CREATE TABLE should_not_exist (a int)")
            .await
            .expect_err("a write");
        let message = error
            .as_db_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(message.contains("read-only transaction"), "{error:?}");
        let timeout: String = client
            .query_one("SHOW statement_timeout", &[])
            .await
            .expect("show")
            .get(0);
        assert_eq!(timeout, "5s");
        let name: String = client
            .query_one("SHOW application_name", &[])
            .await
            .expect("show")
            .get(0);
        assert_eq!(name, "chokepoint");
    });
}

/// The inspector's own connection, through the binary's library crate.
async fn chokepoint_db_connect(url: &str) -> tokio_postgres::Client {
    chokepoint_db::connect(url).await.expect("the inspector connects")
}

#[test]
fn a_database_that_is_not_there_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let output = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["db", &format!("postgresql://postgres@127.0.0.1:{port}/nothing")])
        .output()
        .expect("chokepoint runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot connect to PostgreSQL"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn proves_the_missing_index_on_a_million_rows_with_hypopg_and_spares_the_indexed_column() {
    let cluster = Cluster::start();
    let runtime = runtime();
    seed(&cluster, &runtime, "CREATE EXTENSION pg_stat_statements; CREATE EXTENSION hypopg;
                 CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, handle text NOT NULL, plan text NOT NULL);
                 INSERT INTO users SELECT g, 'user' || g || '@example.com', 'user' || g, CASE WHEN g % 2 = 0 THEN 'free' ELSE 'paid' END
                 FROM generate_series(1, 1000000) g;
                 CREATE INDEX users_handle ON users (handle);
                 CREATE INDEX users_plan ON users (plan);
                 ANALYZE users;");
    runtime.block_on(async {
        let client = app_session(&cluster.url()).await;
        let by_email = client
            .prepare("SELECT id FROM users WHERE email = $1")
            .await
            .expect("prepare");
        let by_handle = client
            .prepare("SELECT id FROM users WHERE handle = $1")
            .await
            .expect("prepare");
        let by_plan = client
            .prepare("SELECT count(*) FROM users WHERE plan = $1")
            .await
            .expect("prepare");
        for n in 0..5i64 {
            client
                .query(&by_email, &[&format!("user{n}@example.com")])
                .await
                .expect("email");
            client
                .query(&by_handle, &[&format!("user{n}")])
                .await
                .expect("handle");
        }
        client.query(&by_plan, &[&"free"]).await.expect("plan");
    });
    let report = inspect(&cluster.url());
    let proposals: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["detector"] == "missing-index")
        .collect();
    assert_eq!(proposals.len(), 1, "exactly the email index: {report:#}");
    let proposal = proposals[0];
    assert_eq!(
        proposal["fix"].as_str().expect("fix").split(" Then").next(),
        Some("CREATE INDEX CONCURRENTLY ON public.users (email);")
    );
    let metrics = &proposal["evidence"]["metrics"];
    let (before, after) = (
        metrics["cost_before"].as_f64().expect("before"),
        metrics["cost_after"].as_f64().expect("after"),
    );
    assert!(after <= 0.5 * before, "HypoPG's cost {after} against {before}");
    assert_eq!(proposal["confidence"], "high");
    let checks = report["database"]["index_checks"]
        .as_array()
        .expect("index checks");
    let checked: Vec<&str> = checks
        .iter()
        .map(|c| c["columns"][0].as_str().expect("column"))
        .collect();
    assert!(
        !checked.contains(&"handle"),
        "the indexed column is not a candidate: {checked:?}"
    );
    // Half the table matches `plan = $1`: the plan scans although an index leads with `plan`,
    // which is recorded as such, not proposed again.
    let existing = checks
        .iter()
        .find(|c| c["columns"][0] == "plan")
        .unwrap_or_else(|| panic!("the scan despite users_plan is recorded: {checks:#?}"));
    assert_eq!(existing["existing"], true, "{existing:#}");
    assert!(
        proposals
            .iter()
            .all(|p| !p["fix"].as_str().unwrap_or("").contains("(plan)")),
        "{proposals:#?}"
    );
}

#[test]
fn the_latest_n_of_x_gets_the_index_in_the_sort_order_costed_with_its_real_page() {
    let cluster = Cluster::start();
    let runtime = runtime();
    seed(&cluster, &runtime, "CREATE EXTENSION pg_stat_statements; CREATE EXTENSION hypopg;
                 CREATE TABLE messages (id bigint PRIMARY KEY, user_id bigint NOT NULL, body text NOT NULL,
                                        created_at timestamptz NOT NULL);
                 INSERT INTO messages SELECT g, 1 + (g * 7) % 1200, 'message ' || g, now() - g * interval '1 second'
                 FROM generate_series(1, 600000) g;
                 ANALYZE messages;");
    runtime.block_on(async {
        let client = app_session(&cluster.url()).await;
        let latest = client
            .prepare("SELECT id, body FROM messages WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2")
            .await
            .expect("prepare");
        for user in 1..=6i64 {
            client.query(&latest, &[&user, &20i64]).await.expect("latest");
        }
    });
    let report = inspect(&cluster.url());
    let proposal = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| {
            f["fix"]
                .as_str()
                .is_some_and(|fix| fix.contains("ON public.messages"))
        })
        .unwrap_or_else(|| panic!("no index proposed for messages: {report:#}"));
    assert!(
        proposal["fix"]
            .as_str()
            .expect("fix")
            .starts_with("CREATE INDEX CONCURRENTLY ON public.messages (user_id, created_at);"),
        "{proposal:#}"
    );
    let check = report["database"]["index_checks"]
        .as_array()
        .expect("index checks")
        .iter()
        .find(|c| c["relation"] == "public.messages")
        .expect("a check");
    assert_eq!(
        check["limit_rows"], 20,
        "costed with the page the calls return: {check:#}"
    );
    let cost = |columns: &[&str]| {
        check["candidates"]
            .as_array()
            .expect("candidates")
            .iter()
            .find(|c| c["columns"] == serde_json::json!(columns))
            .and_then(|c| c["cost_after"].as_f64())
            .unwrap_or_else(|| panic!("no cost for {columns:?}: {check:#}"))
    };
    let (alone, in_order) = (cost(&["user_id"]), cost(&["user_id", "created_at"]));
    assert!(
        in_order * 2.0 <= alone,
        "(user_id, created_at) {in_order} against (user_id) {alone}"
    );
}

#[test]
fn a_pattern_filter_gets_a_trigram_index_said_to_be_unproven() {
    let cluster = Cluster::start();
    let runtime = runtime();
    seed(&cluster, &runtime, "CREATE EXTENSION pg_stat_statements; CREATE EXTENSION hypopg;
                 CREATE TABLE reviews (id bigint PRIMARY KEY, body text NOT NULL);
                 INSERT INTO reviews SELECT g, 'a review of book ' || g || ' ' || md5(g::text) FROM generate_series(1, 300000) g;
                 ANALYZE reviews;");
    runtime.block_on(async {
        let client = app_session(&cluster.url()).await;
        let search = client
            .prepare("SELECT id FROM reviews WHERE body ~* $1 LIMIT 10")
            .await
            .expect("prepare");
        for word in ["dragon", "castle", "winter"] {
            client.query(&search, &[&word]).await.expect("search");
        }
    });
    let report = inspect(&cluster.url());
    let finding = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["fix"].as_str().is_some_and(|fix| fix.contains("gin_trgm_ops")))
        .unwrap_or_else(|| panic!("no trigram index proposed: {report:#}"));
    let fix = finding["fix"].as_str().expect("fix");
    assert!(
        fix.contains("CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE INDEX CONCURRENTLY ON public.reviews USING gin (body gin_trgm_ops);"),
        "{fix}"
    );
    assert!(fix.contains("HypoPG cannot cost a GIN index"), "{fix}");
    assert_eq!(finding["impact"]["basis"], "assumed", "{finding:#}");
    assert!(!fix.contains("reviews (body);"), "no B-tree for a regex: {fix}");
}

/// Starts `chokepoint db --watch` in the background.
fn watch(url: &str, seconds: u32) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["db", url, "--watch", &format!("{seconds}s"), "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chokepoint runs")
}

/// The report's first finding of `detector`; the test fails without one.
fn find_finding(report: &serde_json::Value, detector: &str) -> serde_json::Value {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["detector"] == detector)
        .cloned()
        .unwrap_or_else(|| panic!("no {detector}: {report:#}"))
}

/// `chokepoint db URL --format json`'s report.
fn inspect(url: &str) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["db", url, "--format", "json"])
        .output()
        .expect("chokepoint runs");
    succeeded(output)
}

fn finish(child: std::process::Child) -> serde_json::Value {
    succeeded(child.wait_with_output().expect("chokepoint ends"))
}

/// The JSON report of a run that exited 0; the test fails, showing stderr, otherwise.
fn succeeded(output: std::process::Output) -> serde_json::Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

#[test]
fn names_the_blocker_of_a_hot_row_and_of_ddl() {
    let cluster = Cluster::start();
    let url = cluster.url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // A transaction holds the hot row; three sessions queue to update it.
    let holder = runtime.block_on(async {
        let admin = app_session(&url).await;
        admin
            .batch_execute("CREATE TABLE accounts (id int PRIMARY KEY, balance numeric NOT NULL); INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 10) g;")
            .await
            .expect("schema");
        let holder = app_session(&url).await;
        holder.batch_execute("BEGIN; SELECT balance FROM accounts WHERE id = 1 FOR UPDATE;").await.expect("lock");
        for _ in 0..3 {
            let waiter = app_session(&url).await;
            tokio::spawn(async move { waiter.batch_execute("UPDATE accounts SET balance = balance - 1 WHERE id = 1").await });
        }
        holder
    });
    let report = finish(watch(&url, 2));
    let finding = find_finding(&report, "lock-contention");
    assert!(
        finding["title"]
            .as_str()
            .expect("title")
            .contains("hot rows held by a transaction left idle after `BEGIN; SELECT balance FROM accounts WHERE id = ? FOR UPDATE;`"),
        "{finding:#}"
    );
    assert!(
        finding["location"]
            .as_str()
            .expect("location")
            .contains("idle in transaction"),
        "{finding:#}"
    );
    runtime.block_on(async { holder.batch_execute("ROLLBACK").await.expect("release") });

    // A migration holds ACCESS EXCLUSIVE in an open transaction; readers queue.
    let migration = runtime.block_on(async {
        let migration = app_session(&url).await;
        migration
            .batch_execute("BEGIN; ALTER TABLE accounts ADD COLUMN note text;")
            .await
            .expect("ddl");
        for id in 2..5 {
            let reader = app_session(&url).await;
            tokio::spawn(async move { reader.query("SELECT * FROM accounts WHERE id = $1", &[&id]).await });
        }
        migration
    });
    let report = finish(watch(&url, 2));
    let finding = find_finding(&report, "lock-contention");
    assert!(
        finding["title"]
            .as_str()
            .expect("title")
            .contains("DDL holding ACCESS EXCLUSIVE on accounts"),
        "{finding:#}"
    );
    assert!(
        finding["fix"]
            .as_str()
            .expect("fix")
            .contains("ALTER TABLE accounts"),
        "{finding:#}"
    );
    runtime.block_on(async { migration.batch_execute("ROLLBACK").await.expect("release") });
}

#[test]
fn a_connection_per_request_is_connection_churn() {
    let cluster = Cluster::start();
    let url = cluster.url();
    let child = watch(&url, 3);
    let runtime = runtime();
    runtime.block_on(async {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(2500);
        while std::time::Instant::now() < until {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            let task = tokio::spawn(connection);
            client.query("SELECT 1", &[]).await.expect("query");
            drop(client);
            let _ = task.await;
        }
    });
    let report = finish(child);
    let churn = find_finding(&report, "connection-churn");
    assert!(
        churn["evidence"]["metrics"]["sessions_per_s"]
            .as_f64()
            .expect("rate")
            >= 5.0,
        "{churn:#}"
    );
}

/// Runs `pgbench` against the cluster: initialised at `scale`, then 16 clients for `seconds`
/// while `chokepoint db --watch` samples; returns the watch's report.
fn pgbench_watch(cluster: &Cluster, scale: u32, seconds: u32) -> serde_json::Value {
    let pgbench = Path::new(PG_BIN).join("pgbench");
    let port = cluster.port.to_string();
    let common = ["-h", "127.0.0.1", "-p", port.as_str(), "-U", "postgres"];
    let init = Command::new(&pgbench)
        .args(common)
        .args(["-i", "-q", "-s", &scale.to_string(), "postgres"])
        .output()
        .expect("pgbench -i runs");
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let child = watch(&cluster.url(), seconds);
    let run = Command::new(&pgbench)
        .args(common)
        .args([
            "-n",
            "-c",
            "16",
            "-j",
            "2",
            "-T",
            &(seconds + 1).to_string(),
            "postgres",
        ])
        .output()
        .expect("pgbench runs");
    assert!(
        run.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    finish(child)
}

#[test]
fn pgbench_at_scale_1_contends_on_the_hot_rows_and_at_scale_16_does_not() {
    let cluster = Cluster::start();
    let report = pgbench_watch(&cluster, 1, 6);
    let finding = find_finding(&report, "lock-contention");
    let text = format!("{} {}", finding["title"], finding["location"]);
    assert!(
        text.contains("pgbench_branches") || text.contains("pgbench_tellers"),
        "the hot branch and teller rows are named: {finding:#}"
    );
    assert_eq!(
        common::bottleneck(&report)["detector"],
        "lock-contention",
        "{report:#}"
    );

    let cluster = Cluster::start();
    let report = pgbench_watch(&cluster, 16, 6);
    assert_ne!(
        common::bottleneck(&report)["detector"],
        "lock-contention",
        "{report:#}"
    );
}

#[test]
fn a_database_restarting_mid_watch_is_a_gap_and_the_samples_are_kept() {
    let cluster = Cluster::start();
    let child = watch(&cluster.url(), 6);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    cluster.restart();
    let output = child.wait_with_output().expect("chokepoint ends");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = succeeded(output);
    let activity = &report["database"]["activity"];
    let gaps = activity["gaps"].as_array().expect("gaps");
    assert!(
        gaps.iter().any(|g| {
            let (lost, back) = (&g["lost_unix_s"], &g["reconnected_unix_s"]);
            lost.as_f64()
                .zip(back.as_f64())
                .is_some_and(|(lost, back)| back > lost)
        }),
        "{activity:#}"
    );
    // Sampled before and after the gap: at 10 Hz over about 4 s of the 6.
    assert!(
        activity["samples"].as_u64().expect("samples") >= 30,
        "{activity:#}"
    );
    assert!(stderr.contains("lost the database"), "{stderr}");
}

#[test]
fn literal_values_are_redacted_unless_asked_for() {
    let cluster = Cluster::start();
    let url = cluster.url();
    let runtime = runtime();
    // A transaction left open with a secret in its statement; a secret in pg_stat_statements'
    // text of a utility statement.
    let _holder = runtime.block_on(async {
        let client = app_session(&url).await;
        client
            .batch_execute(
                "CREATE EXTENSION pg_stat_statements;
                 CREATE TABLE accounts (owner text PRIMARY KEY, balance int);
                 INSERT INTO accounts VALUES ('secret-owner@example.com', 5);
                 BEGIN; UPDATE accounts SET balance = 4 WHERE owner = 'secret-owner@example.com';",
            )
            .await
            .expect("workload");
        client
    });
    let redacted = inspect(&url).to_string();
    assert!(!redacted.contains("secret-owner"), "{redacted}");
    assert!(
        redacted.contains("idle in transaction"),
        "the open transaction is reported: {redacted}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["db", &url, "--format", "json", "--show-literals"])
        .output()
        .expect("chokepoint runs");
    let shown = succeeded(output);
    assert!(
        shown.to_string().contains("secret-owner@example.com"),
        "{shown:#}"
    );
    assert_eq!(shown["database"]["literals_shown"], true);
}

#[test]
fn explains_a_slow_sort_by_its_spill_to_disk() {
    let cluster = Cluster::start();
    let runtime = runtime();
    runtime.block_on(async {
        let client = app_session(&cluster.url()).await;
        client
            .batch_execute(
                "CREATE EXTENSION pg_stat_statements;
                 CREATE TABLE readings (id bigint, sensor text, value float8);
                 INSERT INTO readings SELECT g, md5(g::text), random() FROM generate_series(1, 400000) g;
                 ANALYZE readings;
                 SELECT pg_stat_statements_reset();
                 SET work_mem = '64kB';",
            )
            .await
            .expect("schema");
        for _ in 0..3 {
            client
                .query("SELECT sensor, value FROM readings ORDER BY sensor, value", &[])
                .await
                .expect("sort");
        }
    });
    let report = inspect(&cluster.url());
    // One statement, one finding: it returns every row (unbounded-result) and sorts them on disk
    // (slow-query); the angle that carries it names the other's reason and remedy too.
    let about: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            f["location"]
                .as_str()
                .is_some_and(|l| l.contains("FROM readings"))
        })
        .collect();
    assert_eq!(about.len(), 1, "{report:#}");
    let slow = about[0];
    assert!(slow.to_string().contains("a sort spilling to disk"), "{slow:#}");
    assert!(
        slow["fix"].as_str().expect("fix").contains("work_mem"),
        "{slow:#}"
    );
    let settings = report["database"]["settings"].to_string();
    assert!(settings.contains("work_mem"), "{settings}");
}

#[test]
fn traces_with_an_unreachable_database_keep_their_findings_and_exit_2() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/testbed.otlp");
    let output = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .arg("traces")
        .arg(&example)
        .args([
            "--pg",
            &format!("postgresql://postgres@127.0.0.1:{port}/shop"),
            "--format",
            "json",
        ])
        .output()
        .expect("chokepoint runs");
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let problems = common::notes(&report, "error").join("\n");
    assert!(problems.contains("cannot connect to PostgreSQL"), "{problems}");
    assert!(
        report["findings"].as_array().expect("findings").len() >= 8,
        "the trace findings are kept: {report:#}"
    );
}

#[test]
fn ctrl_c_ends_the_watch_and_reports_what_was_sampled() {
    let cluster = Cluster::start();
    let child = watch(&cluster.url(), 60);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let report = finish(child);
    let activity = &report["database"]["activity"];
    let seconds = activity["duration_s"].as_f64().expect("duration");
    assert!(seconds < 10.0, "stopped early: {activity:#}");
    assert!(
        activity["samples"].as_u64().expect("samples") >= 10,
        "{activity:#}"
    );
}

#[test]
fn pg_stat_statements_created_but_not_preloaded_is_said_with_the_fix() {
    let cluster = Cluster::start_with("");
    runtime().block_on(async {
        let client = app_session(&cluster.url()).await;
        client
            .batch_execute("CREATE EXTENSION pg_stat_statements")
            .await
            .expect("create");
    });
    let output = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["db", &cluster.url(), "--format", "json"])
        .output()
        .expect("chokepoint runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = succeeded(output);
    assert!(stderr.contains("add it to shared_preload_libraries"), "{stderr}");
    assert_eq!(
        report["database"]["database"], "postgres",
        "the rest is still read"
    );
}

#[test]
fn a_database_restarting_mid_ramp_is_a_gap_and_the_ramp_is_kept() {
    use std::io::BufRead as _;

    let cluster = Cluster::start();
    let mut target = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/load_target.py"))
        .args(["--mode", "fine"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufReader::new(target.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the port");
    let url = format!("http://127.0.0.1:{}/", line.trim());
    let child = Command::new(env!("CARGO_BIN_EXE_chokepoint"))
        .args(["load", &url, "--concurrency", "1,2,4", "--step-duration", "2s"])
        .args(["--pg", &cluster.url(), "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chokepoint runs");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    cluster.restart();
    let output = child.wait_with_output().expect("chokepoint ends");
    let _ = target.kill();
    let _ = target.wait();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = succeeded(output);
    // Every step of the ramp measured; the database's sessions sampled on both sides of the gap.
    assert_eq!(
        report["load"]["steps"].as_array().map(Vec::len),
        Some(3),
        "{report:#}"
    );
    let activity = &report["database"]["activity"];
    let gaps = activity["gaps"].as_array().expect("gaps");
    assert!(
        gaps.iter()
            .any(|g| g["reconnected_unix_s"].as_f64() > g["lost_unix_s"].as_f64()),
        "{activity:#}"
    );
    assert!(
        activity["samples"].as_u64().expect("samples") >= 30,
        "{activity:#}"
    );
    assert!(stderr.contains("lost the database"), "{stderr}");
}
