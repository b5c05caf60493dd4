//! SDK clients built on first use. Building a client costs its runtime plugins and
//! configuration; a function that never calls a service on a request path (most use
//! two or three of the nine) should not pay for it at cold start.

use std::ops::Deref;
use std::sync::OnceLock;

type Make<C> = Box<dyn Fn() -> C + Send + Sync>;

/// A client, built by `make` the first time it is dereferenced (once, even when
/// several requests race), or given ready-made.
pub struct LazyClient<C> {
    cell: OnceLock<C>,
    make: Make<C>,
}

impl<C: Clone + Send + Sync + 'static> LazyClient<C> {
    /// A client built already (tests, tools).
    pub fn ready(client: C) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(client.clone());
        Self {
            cell,
            make: Box::new(move || client.clone()),
        }
    }

    /// A client `make` builds on first use.
    pub fn on_first_use(make: impl Fn() -> C + Send + Sync + 'static) -> Self {
        Self {
            cell: OnceLock::new(),
            make: Box::new(make),
        }
    }

    /// Whether the client has been built (tests and the cold-start benchmark).
    pub fn is_built(&self) -> bool {
        self.cell.get().is_some()
    }
}

impl<C: Clone + Send + Sync + 'static> From<C> for LazyClient<C> {
    fn from(client: C) -> Self {
        Self::ready(client)
    }
}

impl<C> Deref for LazyClient<C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.cell.get_or_init(|| (self.make)())
    }
}

/// An HTTPS client for an outside REST API (Stripe, Twilio), built on first use: its
/// TLS configuration is not paid for by a cold start that never calls the service.
pub struct LazyHttp {
    cell: OnceLock<reqwest::Client>,
    connect_timeout: std::time::Duration,
    timeout: std::time::Duration,
}

impl LazyHttp {
    pub fn new(connect_timeout: std::time::Duration, timeout: std::time::Duration) -> Self {
        Self {
            cell: OnceLock::new(),
            connect_timeout,
            timeout,
        }
    }

    /// The client, built now if this is the first call.
    pub fn get(&self) -> Result<&reqwest::Client, reqwest::Error> {
        if let Some(client) = self.cell.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .build()?;
        Ok(self.cell.get_or_init(|| client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn built_once_on_first_use_even_when_raced() {
        let built = Arc::new(AtomicUsize::new(0));
        let counter = built.clone();
        let lazy = Arc::new(LazyClient::on_first_use(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            String::from("client")
        }));
        assert!(!lazy.is_built());
        assert_eq!(built.load(Ordering::SeqCst), 0, "nothing is built up front");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let lazy = lazy.clone();
                std::thread::spawn(move || lazy.len())
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.join().ok(), Some(6));
        }
        assert!(lazy.is_built());
        assert_eq!(built.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_ready_client_is_used_as_given() {
        let lazy = LazyClient::ready(String::from("given"));
        assert!(lazy.is_built());
        assert_eq!(lazy.as_str(), "given");
    }
}
