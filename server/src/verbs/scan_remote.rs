//! `scan:@bob[ <regex>]` by the owner (notes §3.3): the keys @bob shared with `me`, as @bob's
//! server lists them to `me`'s server over a pol link (`scan` / `scan <regex>`), passed through
//! (`data:["phone@bob"]`). When @bob is hosted on this cluster, the same view is read
//! in-process ([`super::scan_peer`]). `showhidden` and `page` are not sent, as by the reference.
//!
//! # Errors
//! @bob's server's own error, passed on; AT0007 when it cannot be found or reached, AT0008
//! when it refuses the handshake or answers something that is not a reply.

use at_common::error::AtError;
use at_common::metadata::EpochMillis;
use at_common::reply::Reply;
use at_common::verb::Scan;
use at_common::AtSign;

use super::remote::read_reply;
use super::scan_peer;
use crate::peer::link::Mode;
use crate::peer::Peers;
use crate::store::Store;

/// `scan:<other>[ <regex>]` on `me`'s owner connection, `other` ≠ `me`.
pub async fn scan_remote(
    store: &Store,
    peers: &Peers,
    me: &AtSign,
    other: &AtSign,
    cmd: &Scan,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    if store.get_atsign(other).await?.is_some() {
        let asked = Scan {
            regex: cmd.regex.clone(),
            ..Scan::default()
        };
        return scan_peer(store, other, me, &asked, now_ms).await;
    }
    let line = match &cmd.regex {
        Some(regex) => format!("scan {regex}"),
        None => "scan".to_string(),
    };
    let reply = peers.ask(me, other, Mode::Pol, line).await?;
    read_reply(&reply)
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use super::*;
    use crate::store::{CommitOp, Record};
    use crate::verbs::testing::{command, fixture, wire, NOW};

    #[tokio::test]
    async fn an_atsign_hosted_here_lists_what_it_shared_with_me() {
        let f = fixture().await;
        let bob = f.host("@bob").await;
        let value = Record {
            value: Some("1".into()),
            metadata: Default::default(),
        };
        for key in [
            "@alice:phone@bob",
            "@alice:fax@bob",
            "@carol:phone@bob",
            "public:x@bob",
        ] {
            f.store
                .put(&bob, key, &value, CommitOp::UpdateAll)
                .await
                .unwrap();
        }
        let scan = |line: &str| {
            let Command::Scan(cmd) = command(line) else {
                panic!("{line}")
            };
            cmd
        };
        let peers = f.peers();
        let all = scan_remote(&f.store, &peers, &f.me, &bob, &scan("scan:@bob"), NOW).await;
        assert_eq!(
            wire(&f.me, all),
            "data:[\"fax@bob\",\"phone@bob\"]\n@alice@"
        );
        let some = scan_remote(&f.store, &peers, &f.me, &bob, &scan("scan:@bob ph"), NOW).await;
        assert_eq!(wire(&f.me, some), "data:[\"phone@bob\"]\n@alice@");
    }

    #[actix_rt::test]
    async fn an_atsign_elsewhere_is_at0007_when_its_server_cannot_be_found() {
        let f = fixture().await;
        let carol = AtSign::parse("@carol").unwrap();
        let Command::Scan(cmd) = command("scan:@carol") else {
            panic!()
        };
        let reply = scan_remote(&f.store, &f.peers(), &f.me, &carol, &cmd, NOW).await;
        let reply = wire(&f.me, reply);
        assert!(reply.starts_with("error:AT0007-"), "{reply}");
    }
}
