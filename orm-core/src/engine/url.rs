//! Database URLs: `postgresql://user@host:port/db`, `sqlite://path`, `sqlite::memory:`.

use crate::dialect::Dialect;
use crate::error::{Error, Result};

/// Where an engine connects.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Postgres(Box<tokio_postgres::Config>),
    SqliteFile(String),
    /// An in-memory database shared by every connection of one engine.
    SqliteMemory(String),
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: redact(url),
            reason: reason.into(),
        };
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            use std::sync::atomic::{AtomicU64, Ordering};
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            // The memdb VFS shares one in-memory database between the connections of a
            // process that open the same name; the name is unique per engine.
            let name = format!("file:/orm-memory-{}-{n}?vfs=memdb", std::process::id());
            return Ok(Target::SqliteMemory(name));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(invalid(
                    "a sqlite url needs a file path, or `sqlite::memory:`",
                ));
            }
            return Ok(Target::SqliteFile(path.to_owned()));
        }
        if url.starts_with("postgresql://") || url.starts_with("postgres://") {
            let config: tokio_postgres::Config = url
                .parse()
                .map_err(|e: tokio_postgres::Error| invalid(&e.to_string()))?;
            return Ok(Target::Postgres(Box::new(config)));
        }
        Err(invalid(
            "expected a url starting with postgresql://, sqlite:// or sqlite::memory:",
        ))
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Target::Postgres(_) => Dialect::Postgres,
            Target::SqliteFile(_) | Target::SqliteMemory(_) => Dialect::Sqlite,
        }
    }

    /// A description for error messages, without credentials.
    pub(crate) fn describe(&self) -> String {
        match self {
            Target::Postgres(c) => {
                use tokio_postgres::config::Host;
                let host = match c.get_hosts().first() {
                    Some(Host::Tcp(h)) => h.clone(),
                    #[cfg(unix)]
                    Some(Host::Unix(p)) => p.display().to_string(),
                    None => "localhost".into(),
                };
                let port = c.get_ports().first().copied().unwrap_or(5432);
                format!(
                    "postgresql://{host}:{port}/{}",
                    c.get_dbname().unwrap_or("")
                )
            }
            Target::SqliteFile(p) => format!("sqlite://{p}"),
            Target::SqliteMemory(_) => "sqlite::memory:".into(),
        }
    }
}

/// The URL with any password replaced by `***`, also when the URL cannot be parsed.
fn redact(url: &str) -> String {
    if let Ok(mut u) = url::Url::parse(url) {
        if u.password().is_some() && u.set_password(Some("***")).is_ok() {
            return u.to_string();
        }
        if u.password().is_none() {
            return url.to_owned();
        }
    }
    // `scheme://user:password@host...`: hide what lies between the first `:` of the
    // userinfo and the last `@` before the path.
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..start],
            &authority[..colon],
            &url[start + at..]
        ),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden_in_parsable_and_unparsable_urls() {
        assert_eq!(
            redact("postgresql://u:pw@h:5432/db"),
            "postgresql://u:***@h:5432/db"
        );
        assert_eq!(
            redact("postgresql://u:s3cr3t@h:notaport/db"),
            "postgresql://u:***@h:notaport/db"
        );
        assert_eq!(redact("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(redact("sqlite://a:b.db"), "sqlite://a:b.db");
    }
}
