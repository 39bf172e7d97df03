//! `campusguard check` on good and broken configs: exit codes and the exact messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn check(path: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_campusguard"))
        .args(["check", "--config", path])
        // The documented example must load on a machine with no secrets set.
        .env_remove("CAMPUSGUARD_TOKEN_CONTROL_ROOM")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_documented_example_config_is_valid_and_summarised() {
    let (code, out, err) = check("config/gateway.example.toml");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("config/gateway.example.toml: OK"), "{out}");
    assert!(out.contains("devices in config: 2"), "{out}");
    assert!(out.contains("profiles: 6"), "{out}");
    assert!(out.contains("mqtt: mqtt://127.0.0.1:1883"), "{out}");
}

#[test]
fn the_demo_config_is_valid() {
    let (code, _, err) = check("config/demo.toml");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn syntax_and_type_errors_exit_2_with_file_line_and_column() {
    let cases = [
        (
            "tests/configs/syntax_error.toml",
            "tests/configs/syntax_error.toml:3:16: ",
        ),
        (
            "tests/configs/type_error.toml",
            "tests/configs/type_error.toml:3:18: invalid type: string \"large\", expected usize",
        ),
        (
            "tests/configs/unknown_key.toml",
            "tests/configs/unknown_key.toml:3:1: unknown field `history_retension`",
        ),
    ];
    for (path, expected) in cases {
        let (code, _, err) = check(path);
        assert_eq!(code, 2, "{path}: {err}");
        assert!(
            err.starts_with(expected),
            "{path}: got {err:?}, want prefix {expected:?}"
        );
    }
}

#[test]
fn semantic_problems_are_all_listed_with_what_is_wrong() {
    let (code, _, err) = check("tests/configs/semantic.toml");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("tests/configs/semantic.toml: 4 problem(s):"),
        "{err}"
    );
    for needle in [
        "device xhsy/hd-1: override `heat_fixed`: profile `heat_detector`, override of rule `heat_fixed`:",
        "device xhsy/hd-1: duplicate device",
        "device xhsy/cab-9: unknown profile `chemical_cabinet`",
        "device xhsy/cab-1: override `no_such_rule`: profile `chem_cabinet` has no rule `no_such_rule`",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn a_missing_file_is_reported_not_panicked_on() {
    let (code, _, err) = check("tests/configs/does-not-exist.toml");
    assert_eq!(code, 2);
    assert!(err.contains("does-not-exist.toml"), "{err}");
}

/// `campusguard run` on a config; it must refuse before starting anything, so a bounded wait.
fn run(path: &std::path::Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_campusguard"))
        .args(["run", "--config"])
        .arg(path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`run --config {}` did not refuse; it started",
                path.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn run_refuses_the_example_and_demo_tokens_and_short_ones_and_check_warns_about_them() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, err) = run(&root.join("config/gateway.example.toml"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("http.tokens `control-room`: the token is a placeholder"),
        "{err}"
    );
    assert!(err.contains("http.tokens `lab-xhsy`"), "{err}");
    assert!(
        !err.contains("replace-with-a-long"),
        "a token was echoed: {err}"
    );
    let (code, err) = run(&root.join("config/demo.toml"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("http.tokens `demo-operator`"), "{err}");
    assert!(
        err.contains("users.seed `admin`: the password is a placeholder"),
        "{err}"
    );
    assert!(
        !err.contains("demo-admin-pass"),
        "a password was echoed: {err}"
    );

    // A token of 20 characters: valid for `check`, too short for `run`. Nothing is started:
    // the data directory is never created.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("gw.toml");
    let text = format!(
        "[storage]\ndata_dir = \"{}\"\n[[http.tokens]]\nname = \"ops\"\ntoken = \"abcdefghij0123456789\"\nrole = \"operator\"\n",
        data.display()
    );
    std::fs::write(&config, &text).unwrap();
    let (code, err) = run(&config);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("http.tokens `ops`: the token is shorter than 24 characters"),
        "{err}"
    );
    assert!(!err.contains("abcdefghij"), "{err}");
    assert!(!data.exists(), "run started before refusing");

    let (code, out, err) = check("config/gateway.example.toml");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("warning: `campusguard run` refuses this configuration"),
        "{out}"
    );
    assert!(out.contains("http.tokens `control-room`"), "{out}");
    let (code, out, _) = check(config.to_str().unwrap());
    assert_eq!(code, 0);
    assert!(out.contains("shorter than 24 characters"), "{out}");
}

#[test]
fn the_old_lockout_keys_still_load_and_check_names_them_as_deprecated() {
    let (code, out, err) = check("tests/configs/deprecated_users_keys.toml");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("note: users.max_failed_logins"), "{out}");
    assert!(
        out.contains("users.max_failed_logins and users.lockout are ignored"),
        "{out}"
    );
}

#[test]
fn the_old_school_codes_table_still_loads_with_a_deprecation_note_and_bad_schools_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.toml");
    std::fs::write(&old, "[tickets.school_codes]\nxhsy = \"XH\"\n").unwrap();
    let (code, out, err) = check(old.to_str().unwrap());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("note: tickets.school_codes is deprecated"),
        "{out}"
    );
    // The example lists its school in [[schools]] and gets no note.
    let (_, out, _) = check("config/gateway.example.toml");
    assert!(
        out.contains("schools: 1 (xhsy 新华实验小学 primary)"),
        "{out}"
    );
    assert!(!out.contains("deprecated"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        r#"
[reports]
school_due_day = 31

[[schools]]
id = "xhsy"
name = "新华实验小学"

[[schools]]
id = "dfzx"
name = "东方中学"
code = "XHSY"
kind = "middle"

[[devices]]
id = "d1"
school = "nowhere"
profile = "heat_detector"
"#,
    )
    .unwrap();
    let (code, _, err) = check(bad.to_str().unwrap());
    assert_eq!(code, 2, "{err}");
    for expected in [
        "reports.school_due_day must be within 1..=28",
        "schools.dfzx: code `XHSY` is used by another school",
        "device nowhere/d1: school `nowhere` is not in [[schools]]",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
}
