//! A webhook of the site's own: POST the alarm event as JSON — the same object the SSE stream
//! carries (transition, who, when, and the alarm's fields at the top level) — with a
//! `notification` member saying what this delivery is (idempotency key, step, channel, the
//! Chinese text and the console link). A summary standing for several deliveries sends
//! `{"notification": {…, "keys": [...]}, "events": [...]}`; a ticket event or digest
//! `{"notification": {…}, "subject": {…}}`.
//!
//! With a secret, `X-Campusguard-Signature: sha256=<hex HMAC-SHA256 of the body>` (keyed by
//! the secret) lets the receiver check the body came from this gateway; `X-Campusguard-Delivery`
//! carries the idempotency key (the first, for a summary) so a receiver can drop a delivery it
//! already has — after a crash between sending and recording, a delivery is sent again. Any 2xx
//! is delivered; 429 (with Retry-After), 408 and 5xx are retried; other statuses are permanent.

use serde_json::json;

use super::{hmac_sha256, post_json, Outgoing, SendError};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Campusguard-Signature";
/// The idempotency key header.
pub const DELIVERY_HEADER: &str = "X-Campusguard-Delivery";

pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Option<String>,
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(secret.as_bytes(), body);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Webhook {
    pub fn new(client: reqwest::Client, url: reqwest::Url, secret: Option<String>) -> Self {
        Self {
            client,
            url,
            secret,
        }
    }

    /// The JSON body of one send.
    pub fn body(out: &Outgoing<'_>) -> serde_json::Value {
        let m = out.message;
        let mut notification = json!({
            "key": out.keys.first(),
            "kind": m.kind,
            "step": m.step,
            "channel": out.channel,
            "title": m.title,
            "text": m.text(),
            "link": m.link,
            "alarms": m.alarm_ids(),
        });
        if out.keys.len() > 1 {
            if let Some(obj) = notification.as_object_mut() {
                obj.insert("keys".into(), json!(out.keys));
            }
        }
        match (m.events.as_slice(), &m.subject) {
            ([event], None) if m.kind != "summary" => {
                let mut body = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
                if let Some(obj) = body.as_object_mut() {
                    obj.insert("notification".into(), notification);
                }
                body
            }
            (_, Some(subject)) => json!({ "notification": notification, "subject": subject }),
            (events, None) => json!({ "notification": notification, "events": events }),
        }
    }

    pub async fn send(&self, out: &Outgoing<'_>) -> Result<String, SendError> {
        let body = serde_json::to_vec(&Self::body(out))
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        let mut request = self.client.post(self.url.clone());
        if let Some(key) = out.keys.first() {
            request = request.header(DELIVERY_HEADER, key.as_str());
        }
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, &body));
        }
        post_json(request, body).await.map(|_| "2xx".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hex_hmac_sha256_of_the_body() {
        // python3 -c "import hmac,hashlib; print(hmac.new(b'key', b'{}', hashlib.sha256).hexdigest())"
        assert_eq!(
            signature("key", b"{}"),
            "sha256=a777724d943eb48dc69bca8a4a6d57a04db3f9ec7e1de4e581e860265bdf3032"
        );
    }
}
