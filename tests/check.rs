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
