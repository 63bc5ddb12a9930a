//! The gateway's own SSH connection to a target's host (russh client): the host key must match
//! its pin, then the gateway logs in with its key or password. Clients never see either.

use super::config::SshUpstream;
use super::keys::Pin;
use russh::client;
use russh::keys::PrivateKeyWithHashAlg;
use std::sync::Arc;

/// Checks the host key against the pin; remembers a refusal so the error can say why.
pub struct PinCheck {
    pin: Pin,
    refused: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for PinCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *lock(&self.refused) = Some("host certificates are not supported".into());
            return Ok(false);
        };
        match self.pin.check(key) {
            Ok(()) => Ok(true),
            Err(why) => {
                *lock(&self.refused) = Some(why);
                Ok(false)
            }
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A logged-in connection to the host.
pub type Upstream = client::Handle<PinCheck>;

/// Connect, check the host key against its pin, and log in.
pub async fn connect(cfg: &SshUpstream) -> Result<Upstream, String> {
    let pin = match (&cfg.host_key_fingerprint, &cfg.known_hosts) {
        (Some(fp), _) => Pin::Fingerprint(fp.clone()),
        (None, Some(path)) => Pin::KnownHosts {
            path: path.clone(),
            host: cfg.host.clone(),
            port: cfg.port,
        },
        (None, None) => return Err("no pinned host key".into()),
    };
    let refused = Arc::new(std::sync::Mutex::new(None));
    let handler = PinCheck {
        pin,
        refused: refused.clone(),
    };
    let config = Arc::new(client::Config {
        // The gateway picks this leg's cipher: AES-GCM first, because ring's AES-GCM runs on
        // the CPU's AES and carry-less-multiply instructions while its Poly1305 is portable C,
        // and every byte of a session is decrypted and encrypted again here.
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(&[
                russh::cipher::AES_256_GCM,
                russh::cipher::AES_128_GCM,
                russh::cipher::CHACHA20_POLY1305,
            ]),
            ..Default::default()
        },
        inactivity_timeout: None,
        keepalive_interval: Some(std::time::Duration::from_secs(30)),
        nodelay: true,
        ..Default::default()
    });
    let mut handle = match client::connect(config, (cfg.host.as_str(), cfg.port), handler).await {
        Ok(h) => h,
        Err(e) => {
            return Err(match lock(&refused).take() {
                Some(why) => format!("refused the host {}:{}: {why}", cfg.host, cfg.port),
                None => format!("cannot connect to {}:{}: {e}", cfg.host, cfg.port),
            });
        }
    };
    let auth = if let Some(path) = &cfg.key_file {
        let key = russh::keys::load_secret_key(path, None)
            .map_err(|e| format!("cannot read key_file {}: {e}", path.display()))?;
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| e.to_string())?
            .flatten();
        handle
            .authenticate_publickey(&cfg.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
    } else if let Some(path) = &cfg.password_file {
        let password = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?;
        handle
            .authenticate_password(&cfg.user, password.trim_end_matches(['\r', '\n']))
            .await
    } else {
        return Err("no key_file or password_file".into());
    };
    match auth {
        Ok(r) if r.success() => Ok(handle),
        Ok(_) => Err(format!(
            "the host {}:{} refused the gateway's login as {}",
            cfg.host, cfg.port, cfg.user
        )),
        Err(e) => Err(format!("login to {}:{} failed: {e}", cfg.host, cfg.port)),
    }
}

/// The uid the gateway's login has on the host (`id -u`), for the least-privilege check.
pub async fn uid(host: &Upstream) -> Result<String, String> {
    let mut ch = host
        .channel_open_session()
        .await
        .map_err(|e| e.to_string())?;
    ch.exec(true, "id -u").await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(msg) = ch.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
            russh::ChannelMsg::Eof | russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}
