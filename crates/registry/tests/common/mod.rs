//! Test fixtures: the shared ones of `berth-testkit` (a real `docker-registry` killed on drop,
//! umoci images, openssl certificates, a JWT token server) plus what needs this crate's client.
#![allow(dead_code, unused_imports)]

use std::path::PathBuf;
use std::time::Duration;

use berth_registry::{Client, ClientOptions, RetryPolicy};
pub use berth_testkit::{
    bytes, free_port, make_certs, make_client_cert, require_tool, run, Layout, Registry,
    RegistryConfig, Tls, TokenServer, User,
};

/// What tests here do with a registry besides what berth-testkit offers.
pub trait RegistryExt {
    /// A client speaking plain HTTP to this registry, with fast retries.
    fn client(&self) -> Client;
    /// Seeds `test/busybox:1` (busybox in a umoci-built image) with skopeo.
    fn seed_busybox(&self);
}

impl RegistryExt for Registry {
    fn client(&self) -> Client {
        Client::new(test_options().insecure(&self.host()))
    }

    fn seed_busybox(&self) {
        let l = Layout::busybox();
        self.push_layout(&l.path(), "t", "test/busybox:1");
    }
}

pub fn test_options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
        },
        certs_root: PathBuf::from("/nonexistent-berth-certs.d"),
        ..ClientOptions::default()
    }
}
