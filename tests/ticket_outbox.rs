//! Alarm → ticket is durable: the ticket policy reads the alarm outbox with its own cursor and
//! moves it only once the ticket database took the work. The ticket database is a private
//! PostgreSQL cluster this test starts (`initdb` + `pg_ctl` on a free port in a temp dir) so it
//! can stop it: a gas alarm raised while it is down files its ticket once, after it returns —
//! with the gateway running throughout, after a kill -9 of the gateway, and when the gateway
//! starts again while the database is still down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use campusguard::tickets::{ListFilter, Tickets, TicketsConfig};
use support::*;

/// A PostgreSQL cluster of its own on a free port, stopped (immediately) on drop.
struct PrivatePostgres {
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// Run the server as `postgres` (it refuses to run as root).
    as_postgres: bool,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("pg_ctl").exists())
            .max()
            .expect("a PostgreSQL version with pg_ctl");
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown the cluster directory to postgres");
        }
        let pg = Self {
            port: free_port(),
            data: dir.path().join("data"),
            bin,
            as_postgres,
            dir,
        };
        let data = pg.data.display().to_string();
        pg.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        pg.start_server();
        pg
    }

    /// Runs one of the cluster's programs (as `postgres` when we are root); asserts success.
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let output = command.args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let data = self.data.display().to_string();
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        );
    }

    /// Stops the server the way an outage looks to clients: connections are cut.
    fn stop_server(&self) {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let path = self.bin.join("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()
        } else {
            Command::new(&path).args(args).output()
        };
    }
}

const GAS_PROFILE: &str = r#"
[profiles.test_gas]
label = "测试气体探测器"
label_en = "Test gas detector"

[profiles.test_gas.points.lel_pct]
kind = "number"
unit = "%LEL"

[[profiles.test_gas.rules]]
id = "lel_high"
kind = "high"
point = "lel_pct"
class = "gas"
alarm = 40.0
deadband = 0.5
"#;

/// One gateway's files: its config (a gas detector, tickets in `pg`) and data directory.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    http: u16,
    mqtt: u16,
    prefix: String,
}

impl Site {
    fn new(pg: &PrivatePostgres) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let http = free_port();
        let mqtt = free_port();
        let prefix = unique("ticket-outbox");
        let profiles = dir.path().join("profiles.toml");
        std::fs::write(&profiles, GAS_PROFILE).unwrap();
        let config = dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[broker]
embedded = true
listen = "127.0.0.1:{mqtt}"

[mqtt]
url = "mqtt://127.0.0.1:{mqtt}"
client_id = "{prefix}-gw"
topic_prefix = "{prefix}"
reconnect_min = "100ms"
reconnect_max = "1s"

[http]
listen = "127.0.0.1:{http}"

[[http.tokens]]
name = "ops"
token = "{OPERATOR_TOKEN}"
role = "operator"

[storage]
data_dir = "{data}"

[rules]
profiles_file = "{profiles}"
tick = "100ms"

[tickets]
database_url = "{url}"
# Fail fast while the database is down (the policy retries), and start without it.
acquire_timeout = "1s"

[[devices]]
id = "gas-1"
school = "xhsy"
profile = "test_gas"
"#,
                data = dir.path().join("data").display(),
                profiles = profiles.display(),
                url = pg.url(),
            ),
        )
        .unwrap();
        Self {
            dir,
            config,
            http,
            mqtt,
            prefix,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Publishes a gas reading over the alarm threshold and waits until its alarm is in the
    /// local store (journaled: from here on the outbox holds it).
    async fn raise_gas_alarm(&self) {
        let dev = Device::connect(self.mqtt, &unique("ticket-outbox-dev")).await;
        dev.publish(
            &format!("{}/xhsy/gas-1/telemetry", self.prefix),
            r#"{"lel_pct":55.0}"#,
        )
        .await;
        let url = format!(
            "http://127.0.0.1:{}/api/v1/alarms?state=all&token={OPERATOR_TOKEN}",
            self.http
        );
        eventually("the gas alarm journaled", Duration::from_secs(15), || {
            let url = url.clone();
            async move {
                let alarms: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
                alarms
                    .as_array()?
                    .iter()
                    .any(|a| a["rule"] == "lel_high")
                    .then_some(())
            }
        })
        .await;
        drop(dev);
    }
}

/// Waits until the ticket database holds a ticket, then a little longer, and returns all of
/// them (a second filing would show up in that time).
async fn tickets_after_settling(
    pg: &PrivatePostgres,
    dir: &Path,
) -> Vec<campusguard::tickets::Ticket> {
    let config = TicketsConfig {
        database_url: Some(pg.url()),
        ..TicketsConfig::default()
    };
    let tickets = eventually("the ticket database", Duration::from_secs(20), || {
        let config = config.clone();
        async move { Tickets::open(&config, dir).await.ok() }
    })
    .await;
    eventually("the gas ticket filed", Duration::from_secs(45), || {
        let tickets = tickets.clone();
        async move { (tickets.store.count().await.ok()? >= 1).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = tickets
        .store
        .list(
            &ListFilter {
                limit: 100,
                ..ListFilter::default()
            },
            0,
        )
        .await
        .unwrap();
    tickets.store.close().await;
    all
}

fn assert_one_gas_ticket(all: &[campusguard::tickets::Ticket]) {
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].sensor.as_deref(), Some("xhsy/gas-1/lel_pct"));
    assert_eq!(all[0].rule.as_deref(), Some("lel_high"));
    assert_eq!(all[0].occurrences, 1, "{all:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gas_alarm_raised_while_the_ticket_database_is_down_files_one_ticket_when_it_returns() {
    let pg = PrivatePostgres::start();
    let site = Site::new(&pg);
    let gw = GatewayProcess::start(&site.config);
    wait_ready(site.http).await;

    pg.stop_server();
    site.raise_gas_alarm().await;
    // The policy tried while the database was down, and failed; nothing is dropped.
    eventually("a failed attempt to file", Duration::from_secs(15), || {
        let log = gw.log_text();
        async move { log.contains("not turned into its ticket yet").then_some(()) }
    })
    .await;
    pg.start_server();

    let all = tickets_after_settling(&pg, site.path()).await;
    assert_one_gas_ticket(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gas_alarm_raised_while_the_ticket_database_is_down_files_one_ticket_across_a_kill_9() {
    let pg = PrivatePostgres::start();
    let site = Site::new(&pg);
    let mut gw = GatewayProcess::start(&site.config);
    wait_ready(site.http).await;

    pg.stop_server();
    site.raise_gas_alarm().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    gw.kill9();
    pg.start_server();
    let _gw = GatewayProcess::start(&site.config);
    wait_ready(site.http).await;

    let all = tickets_after_settling(&pg, site.path()).await;
    assert_one_gas_ticket(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_starts_without_its_ticket_database_and_files_the_ticket_once_it_returns() {
    let pg = PrivatePostgres::start();
    pg.stop_server();
    let site = Site::new(&pg);
    // Down from the start: the gateway comes up anyway and raises the alarm.
    let mut gw = GatewayProcess::start(&site.config);
    wait_ready(site.http).await;
    site.raise_gas_alarm().await;
    // Killed, and started again while the database is still down.
    gw.kill9();
    let gw = GatewayProcess::start(&site.config);
    wait_ready(site.http).await;
    assert!(
        gw.log_text()
            .contains("ticket database unreachable at start"),
        "{}",
        gw.log_text()
    );
    pg.start_server();

    let all = tickets_after_settling(&pg, site.path()).await;
    assert_one_gas_ticket(&all);
}
