//! E-mail notifications to a real SMTP server (Debian's python3-aiosmtpd, writing a Maildir):
//! the alarm's mail arrives with a UTF-8 subject and body in Chinese and the console link, and
//! `campusguard notify test` sends a test mail and prints the server's answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// Debian's Python (with python3-aiosmtpd), not a python3 from elsewhere on the PATH.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

struct Smtp {
    port: u16,
    maildir: PathBuf,
    child: Child,
}

impl Smtp {
    fn start(dir: &Path) -> Option<Self> {
        let ok = Command::new(python())
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            if std::env::var_os("CI").is_some() {
                panic!("python3-aiosmtpd is needed (scripts/test installs it)");
            }
            eprintln!("SKIPPED: python3-aiosmtpd is not installed");
            return None;
        }
        let port = free_port();
        let maildir = dir.join("maildir");
        let child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "aiosmtpd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            port,
            maildir,
            child,
        })
    }

    /// Subject, content type and decoded body of every mail received, oldest first.
    fn mails(&self) -> Vec<(String, String, String)> {
        let new = self.maildir.join("new");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|f| {
                let out = Command::new(python())
                    .args([
                        "-c",
                        "import sys, email, email.policy, json\n\
                         m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)\n\
                         print(json.dumps([str(m['subject']), m.get_content_type() + '; ' + str(m.get_content_charset()), m.get_content()]))",
                    ])
                    .arg(f)
                    .output()
                    .unwrap();
                let v: (String, String, String) = serde_json::from_slice(&out.stdout)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
                v
            })
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mail_toml(port: u16) -> String {
    format!(
        r#"
[notify]
console_url = "https://cg.example/console/"

[[notify.channels]]
name = "mail"
kind = "email"
smtp_url = "smtp://127.0.0.1:{port}"
from = "campusguard@school.example"
to = ["safety@school.example", "校长 <principal@school.example>"]

[[notify.routes]]
classes = ["fire"]
after = "0s"
channels = ["mail"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_is_mailed_in_chinese_and_notify_test_sends_a_test_mail() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = Smtp::start(dir.path()) else {
        return;
    };
    let mut setup = Setup::embedded("notify-mail", dir.path());
    setup.extra_toml = format!(
        "[[devices]]\nid = \"room-1\"\nschool = \"xhsy\"\nprofile = \"test_room\"\nbuilding = \"实验楼\"\nroom = \"301\"\n{}",
        mail_toml(smtp.port)
    );
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("notify-mail-dev")).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    dev.publish(
        &gw.topic("xhsy", "room-1", "telemetry"),
        r#"{"temp_c":82.0}"#,
    )
    .await;
    let fire = stream
        .next_matching(Duration::from_secs(5), |e| e["rule"] == "temp_fire")
        .await;
    let id = fire["id"].as_u64().unwrap();
    let mails = eventually("the mail", Duration::from_secs(10), || async {
        let m = smtp.mails();
        (!m.is_empty()).then_some(m)
    })
    .await;
    let (subject, content_type, body) = &mails[0];
    assert!(subject.starts_with("【火警】xhsy"), "{subject}");
    assert_eq!(content_type, "text/plain; utf-8");
    for expected in [
        "学校：xhsy",
        "位置：实验楼 301",
        "状态：未确认",
        &format!("查看并确认：https://cg.example/console/#/alarms/{id}"),
    ] {
        assert!(body.contains(expected), "missing {expected:?} in {body}");
    }
    gw.wait_until(Duration::from_secs(5), || async {
        gw.metric("campusguard_notifications_total{channel=\"mail\",result=\"sent\"}")
            .await
            == 1.0
    })
    .await;
    gw.stop().await;

    // `notify test` from the command line, on the same configuration.
    let config = dir.path().join("mail.toml");
    std::fs::write(&config, mail_toml(smtp.port)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_campusguard"))
        .args(["notify", "test", "--channel", "mail", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("mail: delivered (SMTP 250"), "{stdout}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2);
    assert!(mails[1].0.starts_with("【测试】"), "{:?}", mails[1]);
    // An unknown channel is refused with the known ones named.
    let out = Command::new(env!("CARGO_BIN_EXE_campusguard"))
        .args(["notify", "test", "--channel", "pager", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("(known: mail)"));
}
