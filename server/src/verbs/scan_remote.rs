//! `scan:@bob[ <regex>]` by the owner (docs/protocol.md#scan): the keys @bob shared with `me`,
//! as @bob's server lists them to `me`'s server over a pol link (`scan` / `scan <regex>`),
//! passed through (`data:["phone@bob"]`), in-process when @bob is hosted on this cluster
//! ([`crate::peer`]).
//! `showhidden` and `page` are not sent, as by the reference.
//!
//! # Errors
//! @bob's server's own error, passed on; AT0007 when it cannot be found or reached, AT0008
//! when it refuses the handshake or answers something that is not a reply.

use at_common::error::AtError;
use at_common::reply::Reply;
use at_common::verb::Scan;
use at_common::AtSign;

use crate::peer::link::Mode;
use crate::peer::Peers;
use crate::remote::fetch::read_reply;

/// `scan:<other>[ <regex>]` on `me`'s owner connection, `other` ≠ `me`.
pub async fn scan_remote(
    peers: &Peers,
    me: &AtSign,
    other: &AtSign,
    cmd: &Scan,
) -> Result<Reply, AtError> {
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
    use crate::verbs::testing::{command, fixture, wire};

    fn scan(line: &str) -> Scan {
        let Command::Scan(cmd) = command(line) else {
            panic!("{line}")
        };
        cmd
    }

    #[actix_rt::test]
    async fn an_atsign_hosted_here_lists_what_it_shared_with_me() {
        let f = fixture().await;
        f.host("@alice").await;
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
        let node = f.node();
        let peers = node.hosts.peers();
        let all = scan_remote(peers, &f.me, &bob, &scan("scan:@bob")).await;
        assert_eq!(
            wire(&f.me, all),
            "data:[\"fax@bob\",\"phone@bob\"]\n@alice@"
        );
        let some = scan_remote(peers, &f.me, &bob, &scan("scan:@bob ph")).await;
        assert_eq!(wire(&f.me, some), "data:[\"phone@bob\"]\n@alice@");
    }

    #[actix_rt::test]
    async fn an_atsign_elsewhere_is_at0007_when_its_server_cannot_be_found() {
        let f = fixture().await;
        let carol = AtSign::parse("@carol").unwrap();
        let reply = scan_remote(&f.peers(), &f.me, &carol, &scan("scan:@carol")).await;
        assert_eq!(
            wire(&f.me, reply),
            "error:AT0007-Secondary server not found : the atDirectory is unreachable\n@alice@"
        );
    }
}
