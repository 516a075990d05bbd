//! One status check, from the outside, as a client sees it: ask the directory where the atSign
//! lives, then ask that atServer, unauthenticated, for `scan` and `lookup:publickey@<atSign>`.
//! A server that answers the paused-server error (AT0024: the atSign is suspended) is
//! `stopped`.
//!
//! Each step is bounded by the timeout; whatever does not answer in time is `unavailable`.
//! A step that could not talk (refused, reset, TLS failure, closed, silent) is `unavailable`;
//! one that talked nonsense is `error`.

use std::time::Duration;

use at_common::status::{self, AtStatus, RootStatus, ServerStatus};
use at_common::{Address, AtSign};
use tokio_rustls::TlsConnector;

use crate::client::{self, Failure};
use crate::store::Store;

/// The longest reply read (a public `scan` of a busy atSign is the long one).
const MAX_REPLY: usize = 4 * 1024 * 1024;

/// Where the first step's answer comes from.
#[derive(Clone)]
pub enum Directory {
    /// This directory's own store: the same answer its listener gives, without the round trip.
    Local(Store),
    /// Another directory, asked over TLS as clients ask it.
    Remote(Address),
}

/// Makes checks; cheap to clone.
#[derive(Clone)]
pub struct Checker {
    directory: Directory,
    tls: TlsConnector,
    timeout: Duration,
}

impl Checker {
    pub fn new(directory: Directory, tls: TlsConnector, timeout: Duration) -> Checker {
        Checker {
            directory,
            tls,
            timeout,
        }
    }

    /// Checks `at_sign`; never fails: every failure is a status.
    pub async fn check(&self, at_sign: &AtSign) -> AtStatus {
        let location = match self.locate(at_sign).await {
            Ok(Some(location)) => location,
            Ok(None) => return AtStatus::not_found(at_sign.clone()),
            Err(failure) => {
                let root_status = match failure {
                    Failure::Unreachable(why) => {
                        tracing::debug!(%at_sign, %why, "directory unavailable");
                        RootStatus::Unavailable
                    }
                    Failure::Protocol(why) => {
                        tracing::warn!(%at_sign, %why, "directory broke the protocol");
                        RootStatus::Error
                    }
                };
                return AtStatus::root_only(at_sign.clone(), root_status);
            }
        };
        let server_status = match self.bounded(self.ask_server(at_sign, &location)).await {
            Ok(status) => status,
            Err(Failure::Unreachable(why)) => {
                tracing::debug!(%at_sign, %location, %why, "atServer unavailable");
                ServerStatus::Unavailable
            }
            Err(Failure::Protocol(why)) => {
                tracing::warn!(%at_sign, %location, %why, "atServer broke the protocol");
                ServerStatus::Error
            }
        };
        AtStatus {
            at_sign: at_sign.clone(),
            server_location: Some(location.to_string()),
            root_status: RootStatus::Found,
            server_status,
        }
    }

    /// Step 1: the atSign's `host:port`, or `None` when the directory has none.
    async fn locate(&self, at_sign: &AtSign) -> Result<Option<Address>, Failure> {
        match &self.directory {
            // Bounded too: a stalled Redis must not hold the request.
            Directory::Local(store) => {
                self.bounded(async {
                    store
                        .get(at_sign)
                        .await
                        .map_err(|e| Failure::Unreachable(format!("store: {e}")))
                })
                .await
            }
            Directory::Remote(directory) => {
                self.bounded(client::locate(&self.tls, directory, at_sign))
                    .await
            }
        }
    }

    /// Step 2: what the atServer at `location` says about `at_sign`.
    async fn ask_server(
        &self,
        at_sign: &AtSign,
        location: &Address,
    ) -> Result<ServerStatus, Failure> {
        let mut conversation = client::connect(&self.tls, location, MAX_REPLY).await?;
        let scan = conversation.ask("scan").await?;
        // A suspended atSign: its server answers, and refuses everything (it then closes).
        if status::is_paused(&scan) {
            return Ok(ServerStatus::Stopped);
        }
        let status = if status::scan_lists_public_key(&scan, at_sign).map_err(Failure::Protocol)? {
            let key = status::public_key_name(at_sign);
            let lookup = conversation.ask(&format!("lookup:{key}")).await?;
            status::read_public_key_lookup(&lookup).map_err(Failure::Protocol)?
        } else {
            ServerStatus::Teapot
        };
        conversation.close(b"exit\n").await;
        Ok(status)
    }

    /// `step`, or `Unreachable` once the timeout passes.
    async fn bounded<T>(
        &self,
        step: impl std::future::Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        tokio::time::timeout(self.timeout, step)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Unreachable(format!(
                    "no answer within {} ms",
                    self.timeout.as_millis()
                )))
            })
    }
}
