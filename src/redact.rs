//! Credentials out of messages. Config errors and `Debug` output name the values they are
//! about, and some of those values hold secrets: a `postgres://user:password@…` URL, a token, a
//! password. [`url`] masks the password of one URL; [`Secrets`] collects every secret of a
//! config text (and of its environment overrides) so [`Secrets::scrub`] can mask them in any
//! message built from it, whichever check wrote the message.

/// `scheme://user:password@host/…?password=…` → `scheme://user:***@host/…?password=***`
/// (also `token=`, `secret=` in the query); other text unchanged.
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", pairs.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Whether a config key (its last part, any case) holds a secret: `*token*`, `*password*`,
/// `*secret*` — but not `*_env`, which names the variable holding one.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    !key.ends_with("_env")
        && (key.contains("token") || key.contains("password") || key.contains("secret"))
}

/// Whether a config key holds a URL, whose userinfo and query may carry credentials.
fn is_url_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "url" || key.ends_with("_url")
}

/// Shorter values are not worth masking (they would garble every message) and no check accepts
/// them as credentials anyway.
const MIN_SECRET_CHARS: usize = 4;

/// The secrets found in a config text and its environment overrides.
#[derive(Debug, Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Every value of a secret key (see [`is_secret_key`]) in `text`, and the credentials inside
    /// every URL-valued key, found line by line so that even a document that does not parse
    /// is covered.
    pub fn in_toml(text: &str) -> Self {
        let mut found = Self::default();
        for line in text.lines() {
            for (key, value) in assignments(line) {
                found.add(key, &value);
            }
        }
        found
    }

    /// Adds the secrets of `CAMPUSGUARD_<SECTION>__<KEY>=value` overrides.
    pub fn add_env<'a>(&mut self, env: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (name, value) in env {
            if let Some(key) = name.rsplit("__").next() {
                self.add(key, value);
            }
        }
    }

    fn add(&mut self, key: &str, value: &str) {
        if is_secret_key(key) {
            self.push(value);
        } else if is_url_key(key) {
            for part in url_credentials(value) {
                self.push(part);
            }
        }
    }

    fn push(&mut self, value: &str) {
        if value.chars().count() >= MIN_SECRET_CHARS && !self.0.iter().any(|s| s == value) {
            self.0.push(value.to_string());
        }
    }

    /// `message` with every secret replaced by `***` wherever it stands as a whole word (not
    /// inside a longer word: a password `short` leaves "shorter" alone), longest first, so a
    /// secret containing another is masked whole.
    pub fn scrub(&self, message: &str) -> String {
        let mut secrets: Vec<&String> = self.0.iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut out = message.to_string();
        for secret in secrets {
            out = replace_words(&out, secret, "***");
        }
        out
    }
}

/// Characters that continue a word: a secret next to one of them is part of something longer.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-')
}

/// `text` with each occurrence of `word` that is not inside a longer word replaced.
fn replace_words(text: &str, word: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let (before, after) = (&rest[..at], &rest[at + word.len()..]);
        let starts = before.chars().next_back().is_none_or(|c| !is_word_char(c));
        let ends = after.chars().next().is_none_or(|c| !is_word_char(c));
        out.push_str(before);
        if starts && ends {
            out.push_str(with);
        } else {
            out.push_str(word);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The password of a URL's userinfo and the values of secret query parameters.
fn url_credentials(url: &str) -> Vec<&str> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut found = Vec::new();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        if let Some((_, password)) = userinfo.split_once(':') {
            found.push(password);
        }
    }
    if let Some((_, query)) = tail.split_once('?') {
        let query = query.split('#').next().unwrap_or(query);
        for kv in query.split('&') {
            if let Some((k, v)) = kv.split_once('=') {
                if is_secret_key(k) {
                    found.push(v);
                }
            }
        }
    }
    found
}

/// The `key = value` assignments of one TOML line (also inside inline tables), with the value
/// unquoted. Tolerant: anything it does not understand is skipped.
fn assignments(line: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => break,
            b'"' | b'\'' => i = skip_string(line, i).unwrap_or(bytes.len()),
            b'=' => {
                let key = last_key(&line[..i]);
                let rest = &line[i + 1..];
                let start = rest.len() - rest.trim_start().len();
                let value = value_at(rest.trim_start());
                if let (Some(key), Some((value, used))) = (key, value) {
                    out.push((key, value));
                    i += 1 + start + used;
                    continue;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// The end (exclusive) of the quoted string starting at `at`.
fn skip_string(line: &str, at: usize) -> Option<usize> {
    let quote = line.as_bytes()[at];
    let mut i = at + 1;
    let bytes = line.as_bytes();
    while i < bytes.len() {
        if quote == b'"' && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// The last part of the (dotted, maybe quoted) key that ends `before`.
fn last_key(before: &str) -> Option<&str> {
    let key = before.trim_end();
    let start = key
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '"' | '\'')))
        .map_or(0, |(p, c)| p + c.len_utf8());
    let key = key.get(start..)?.trim_matches(['"', '\'']);
    (!key.is_empty()).then_some(key)
}

/// A value at the start of `rest`: a quoted string (unescaped naively) or a bare word; with the
/// bytes it took.
fn value_at(rest: &str) -> Option<(String, usize)> {
    match rest.as_bytes().first()? {
        b'"' | b'\'' => {
            // An unterminated string runs to the end of the line (and is still a secret).
            let (inner, end) = match skip_string(rest, 0) {
                Some(end) => (rest.get(1..end - 1).unwrap_or_default(), end),
                None => (rest.get(1..).unwrap_or_default(), rest.len()),
            };
            Some((inner.replace("\\\"", "\"").replace("\\\\", "\\"), end))
        }
        _ => {
            let end = rest
                .find(|c: char| c.is_whitespace() || matches!(c, ',' | '}' | ']' | '#'))
                .unwrap_or(rest.len());
            Some((rest[..end].to_string(), end))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_and_the_rest_kept() {
        assert_eq!(
            url("postgres://u:p@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            url("postgres://h/db?user=u&password=x@y"),
            "postgres://h/db?user=u&password=***"
        );
        assert_eq!(url("http://h/?token=abc"), "http://h/?token=***");
        assert_eq!(url("sqlite://data/tickets.db"), "sqlite://data/tickets.db");
        assert_eq!(url("not a url"), "not a url");
    }

    #[test]
    fn the_secrets_of_a_config_text_are_found_and_scrubbed_from_messages() {
        let text = r#"
[tickets]
database_url = "mysql://ops:Pg-S3cret@db/x"   # not postgres
[timeseries]
url = "http://influx:8086/?token=Tq-S3cret"
token = "Tk-S3cret-abc"
token_env = "CAMPUSGUARD_INFLUX_TOKEN"
[[users.seed]]
name = "admin"
password = 12345678
[[http.tokens]]
inline = { token = 'In-S3cret', role = "admin" }
"#;
        let mut secrets = Secrets::in_toml(text);
        secrets.add_env([("CAMPUSGUARD_MQTT__PASSWORD", "Env-S3cret")]);
        let message = "database_url `mysql://ops:Pg-S3cret@db/x` bad; token Tk-S3cret-abc; \
                       Tq-S3cret; invalid type: integer `12345678`; In-S3cret; Env-S3cret; \
                       CAMPUSGUARD_INFLUX_TOKEN admin";
        let scrubbed = secrets.scrub(message);
        for secret in [
            "Pg-S3cret",
            "Tk-S3cret",
            "Tq-S3cret",
            "12345678",
            "In-S3cret",
            "Env-S3cret",
        ] {
            assert!(!scrubbed.contains(secret), "{secret} left in {scrubbed}");
        }
        // Only whole words: a secret inside a longer word is not the secret.
        let short = Secrets::in_toml("token = \"short\"");
        assert_eq!(
            short.scrub("token `short`: shorter than 16"),
            "token `***`: shorter than 16"
        );
        // Names of variables and users are not secrets.
        assert!(
            scrubbed.contains("CAMPUSGUARD_INFLUX_TOKEN admin"),
            "{scrubbed}"
        );
        assert!(scrubbed.contains("mysql://ops:***@db/x"), "{scrubbed}");
    }

    #[test]
    fn a_broken_line_is_skipped_not_panicked_on() {
        for line in [
            "token = \"unterminated",
            "= \"x\"",
            "password =",
            "\"",
            "a = 'b' = \"c\"",
            "é = \"ü\"",
        ] {
            let _ = Secrets::in_toml(line).scrub("anything");
        }
        assert!(!Secrets::in_toml("token = \"unterminated-secret")
            .scrub("unterminated-secret")
            .contains("unterminated-secret"));
    }
}
