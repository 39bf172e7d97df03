//! E-mail over SMTP with lettre: `smtp://host[:port]` (port 25 by default) upgrades to TLS with
//! STARTTLS when the server offers it and stays plain otherwise (a school's local relay);
//! `smtps://host[:port]` (465) speaks TLS from the start. TLS checks the server against the
//! system's roots. Optional login with `username` and the password from `password_env`. The
//! mail is UTF-8 plain text: the subject is the message's title, the body its facts and link.
//! SMTP 4xx answers and connection problems are retried; 5xx answers are permanent.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::SendError;
use crate::notify::config::ChannelConfig;
use crate::notify::message::Message;

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    pub fn from_config(config: &ChannelConfig, timeout: Duration) -> Result<Self, String> {
        let at = format!("channel `{}`", config.name);
        let raw = config
            .smtp_url
            .as_deref()
            .ok_or_else(|| format!("{at}: no smtp_url"))?;
        let url = reqwest::Url::parse(raw).map_err(|e| format!("{at}: smtp_url: {e}"))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{at}: smtp_url has no host"))?
            .to_string();
        let tls_params =
            || TlsParameters::new(host.clone()).map_err(|e| format!("{at}: TLS setup: {e}"));
        let (port, tls) = match url.scheme() {
            "smtp" => (url.port().unwrap_or(25), Tls::Opportunistic(tls_params()?)),
            "smtps" => (url.port().unwrap_or(465), Tls::Wrapper(tls_params()?)),
            other => return Err(format!("{at}: smtp_url scheme `{other}`")),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(user) = &config.username {
            let password = config.resolved_password().unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let parse = |addr: &str| {
            addr.parse::<Mailbox>()
                .map_err(|e| format!("{at}: `{addr}`: {e}"))
        };
        let from = parse(config.from.as_deref().unwrap_or_default())?;
        let to = config
            .to
            .iter()
            .map(|a| parse(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            transport: builder.build(),
            from,
            to,
        })
    }

    /// The mail of `message`.
    pub fn mail(&self, message: &Message) -> Result<lettre::Message, SendError> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(message.title.clone())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .body(message.text())
            .map_err(|e| SendError::Permanent(format!("mail cannot be built: {e}")))
    }

    pub async fn send(&self, message: &Message) -> Result<String, SendError> {
        let mail = self.mail(message)?;
        match self.transport.send(mail).await {
            Ok(response) => Ok(format!(
                "SMTP {} {}",
                response.code(),
                response.message().next().unwrap_or_default()
            )
            .trim_end()
            .to_string()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::retry(format!("SMTP: {e}"))),
        }
    }
}
