//! One node's parts, wired once, for `serve` ([`crate::listener`]) and for tests: the monitors,
//! the links to other atServers, the notification router, the key stores, the connection
//! limits, and the serving of this node's own atSigns to its own peer links in-process.
//!
//! Why in-process links are safe: they are made only for an atSign this cluster hosts (its
//! record is in the store), by this node for one of its own atSigns, so the TLS that would
//! prove the server's and the client's names proves nothing more here. Everything else is
//! kept: the link still says `from`, signs the challenge and says `pol`, and the other
//! atSign's connection still checks its block list and runs the same verbs.

use std::sync::Arc;
use std::time::Duration;

use actix::Actor as _;
use at_common::AtSign;

use crate::config::ServerConfig;
use crate::connection::actor::{Connection, Limits, Origin};
use crate::connection::admission::Admission;
use crate::connection::throttle::AuthThrottle;
use crate::keystore::{Hosts, Services};
use crate::notifications::{Monitors, QuotaKeeper};
use crate::pace::NotifyPace;
use crate::peer::{InProcess, PeerSettings, Peers};
use crate::remote::LinkObserver;
use crate::router::NotificationRouter;
use crate::store::Store;
use crate::verbs::PasscodePenalty;

/// How much an in-process connection buffers each way before the writer waits.
const IN_PROCESS_BUFFER: usize = 64 * 1024;

/// A running node's parts.
pub struct Node {
    pub hosts: Hosts,
    pub limits: Arc<Limits>,
}

impl Node {
    /// Starts the node's actors over `store` on the current actix system; key stores run on
    /// `arbiters` (at least one). The node's shutdown is its admission's
    /// ([`Admission::drain`]).
    pub fn start(
        config: &ServerConfig,
        store: Store,
        peer_settings: PeerSettings,
        arbiters: Vec<actix::ArbiterHandle>,
    ) -> Node {
        let monitors = Monitors::start(store.clone());
        let peers = Peers::new(peer_settings, store.clone());
        peers.observe(Arc::new(LinkObserver {
            store: store.clone(),
            monitors: monitors.clone(),
        }));
        let router = NotificationRouter::new(
            store.clone(),
            peers.clone(),
            Duration::from_millis(config.notification_retry_max_millis),
        )
        .start();
        let services = Services {
            store,
            monitors,
            peers: peers.clone(),
            router,
            quota: Arc::new(QuotaKeeper::new(config.notification_quota())),
            pace: Arc::new(NotifyPace::new(config.notify_pace())),
            penalty: Arc::new(PasscodePenalty::new(Duration::from_millis(
                config.enroll_passcode_wait_millis,
            ))),
            suspensions: Default::default(),
        };
        let hosts = Hosts::new(
            services,
            Duration::from_secs(config.keystore_idle_secs),
            arbiters,
        );
        let limits = Arc::new(Limits {
            started: std::time::Instant::now(),
            buffer_limit: config.buffer_limit,
            buffer_budget: at_common::codec::BufferBudget::new(config.buffer_budget),
            auth_throttle: Arc::new(AuthThrottle::new(config.throttle_limits())),
            peer_certificate_required: config.peer_client_certificate
                == crate::config::ClientCertificate::Required,
            admission: Admission::new(config.admission_limits()),
        });
        actix_rt::spawn(limits.admission.close_idle());
        actix_rt::spawn(hosts.close_suspended());
        peers.serve_in_process(Arc::new(Local {
            hosts: hosts.clone(),
            limits: Arc::clone(&limits),
        }));
        Node { hosts, limits }
    }
}

/// This node serving its own atSigns to its own links. Its connections are not among the
/// node's network connections ([`Admission`]): the links that make them are bounded by
/// `outbound_max_limit`.
struct Local {
    hosts: Hosts,
    limits: Arc<Limits>,
}

impl InProcess for Local {
    fn connect(&self, atsign: &AtSign) -> tokio::io::DuplexStream {
        let (near, far) = tokio::io::duplex(IN_PROCESS_BUFFER);
        Connection::start(
            far,
            atsign.clone(),
            &self.hosts,
            Arc::clone(&self.limits),
            None,
            Origin::InProcess,
        );
        near
    }
}
