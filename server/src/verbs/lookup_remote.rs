//! The owner's `lookup` of another atSign's key (docs/protocol.md#lookup,
//! docs/storage.md#cached-keys): `lookup:<key>@bob` reads what @bob shared with the owner,
//! from the cache unless `bypassCache:true`, else asked of @bob's server as
//! `lookup:all:<key>@bob` over a pol-authenticated link ([`crate::remote::fetch`]).
//!
//! # Format
//! As a local lookup; `all` names the key as the owner knows it: `@me:<key>@bob`.
//!
//! # Errors
//! Those of [`crate::remote::fetch`].

use at_common::error::AtError;
use at_common::metadata::EpochMillis;
use at_common::reply::Reply;
use at_common::verb::Lookup;
use at_common::AtSign;

use super::llookup::render;
use crate::notifications::Monitors;
use crate::peer::link::Mode;
use crate::peer::Peers;
use crate::remote::cache::Cached;
use crate::remote::fetch::{fetch_through_cache, Source};
use crate::store::Store;

/// `lookup[:bypassCache:true][:meta|:all]:<key>@bob` by `me`'s owner, @bob ≠ `me`.
pub async fn lookup_remote(
    store: &Store,
    peers: &Peers,
    monitors: &Monitors,
    me: &AtSign,
    cmd: &Lookup,
    now: EpochMillis,
) -> Result<Reply, AtError> {
    let other = &cmd.owner;
    let shown = format!("{me}:{}{other}", cmd.key);
    let cached_key = format!("cached:{shown}");
    fetch_through_cache(
        Source {
            store,
            peers,
            monitors,
            me,
            other,
            mode: Mode::Pol,
        },
        &cmd.key,
        cmd.bypass_cache == Some(true),
        (&cached_key, Cached::Shared),
        now,
    )
    .await
    .map(|record| render(&shown, &record, cmd.op))
}
