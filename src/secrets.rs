//! Secrets kept in files: `token_file`, `password_file` of the config read a secret from a
//! file instead of the config itself or the environment, so the config can be world-readable
//! and the secret not.
//!
//! A relative path names a systemd credential when `$CREDENTIALS_DIRECTORY` is set
//! (`LoadCredential=control-room-token:/etc/campusguard/secrets/control-room-token` in the
//! unit, `token_file = "control-room-token"` in the config): systemd hands the service a copy
//! only it can read, even with `ProtectSystem=strict` and another owner of the original.
//! Otherwise a relative path is taken from the working directory. One trailing newline is
//! dropped (`echo … > file` writes one).

use std::path::{Path, PathBuf};

/// Where a `*_file` setting points: relative paths under `$CREDENTIALS_DIRECTORY` when set.
pub fn resolve(path: &Path) -> PathBuf {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if path.is_relative() && !dir.is_empty() => Path::new(&dir).join(path),
        _ => path.to_path_buf(),
    }
}

/// The secret in `path` (see [`resolve`]); the error names the file and why, never content.
pub fn read(path: &Path) -> Result<String, String> {
    let full = resolve(path);
    let text = std::fs::read_to_string(&full)
        .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
    let secret = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(format!("{} is empty", full.display()));
    }
    Ok(secret.to_owned())
}

/// Whether other users may read `path` (mode `o+r`): `check` warns about such a secret.
pub fn world_readable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_file_loses_one_trailing_newline_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-token\n").unwrap();
        assert_eq!(read(&path).unwrap(), "s3cret-token");
        std::fs::write(&path, "").unwrap();
        assert!(read(&path).unwrap_err().contains("empty"));
        assert!(read(&dir.path().join("missing"))
            .unwrap_err()
            .contains("cannot read"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(world_readable(&path));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(!world_readable(&path));
    }
}
