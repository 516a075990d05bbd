//! The authorization matrix on the wire: owner and unauthenticated connections × each kind of
//! key × each verb, with the exact reply of each. (The pol-authenticated peer column comes with
//! server-to-server, issue 6.)

mod support;

use support::*;

/// One key of each kind, written by the owner first: (update line, commit id).
const KEYS: &[(&str, &str)] = &[
    ("update:public:pub@alice P\n", "data:0\n@alice@"),
    ("update:self@alice S\n", "data:1\n@alice@"),
    ("update:@bob:shared@alice SH\n", "data:2\n@alice@"),
    ("update:_hidden@alice H\n", "data:3\n@alice@"),
    ("update:public:__phidden@alice PH\n", "data:4\n@alice@"),
    ("update:ttb:600000:later@alice L\n", "data:5\n@alice@"),
    (
        "update:privatekey:at_pkam_publickey K\n",
        "data:-1\n@alice@",
    ),
];

const OWNER: &[(&str, &str)] = &[
    ("llookup:public:pub@alice\n", "data:P\n@alice@"),
    ("llookup:self@alice\n", "data:S\n@alice@"),
    ("llookup:@bob:shared@alice\n", "data:SH\n@alice@"),
    ("llookup:_hidden@alice\n", "data:H\n@alice@"),
    ("llookup:later@alice\n", "data:null\n@alice@"),
    ("lookup:self@alice\n", "data:S\n@alice@"),
    ("lookup:_hidden@alice\n", "data:H\n@alice@"),
    (
        "lookup:nothing@alice\n",
        "error:AT0015-key not found : @alice:nothing@alice does not exist in keystore\n@alice@",
    ),
    (
        "scan\n",
        "data:[\"@alice:signing_privatekey@alice\",\"@bob:shared@alice\",\"public:pub@alice\",\"public:signing_publickey@alice\",\"self@alice\"]\n@alice@",
    ),
    (
        "scan:showhidden:true\n",
        "data:[\"@alice:signing_privatekey@alice\",\"@bob:shared@alice\",\"_hidden@alice\",\"public:__phidden@alice\",\"public:pub@alice\",\"public:signing_publickey@alice\",\"self@alice\"]\n@alice@",
    ),
    (
        "scan .*pub.*\n",
        "data:[\"public:pub@alice\",\"public:signing_publickey@alice\"]\n@alice@",
    ),
    (
        "delete:public:publickey@alice\n",
        "error:AT0009-UnAuthorized client in request : Cannot delete protected key: 'public:publickey@alice'\n@alice@",
    ),
    ("stats:3\n", "data: [{\"id\":\"3\",\"name\":\"lastCommitID\",\"value\":\"5\"}]\n@alice@"),
    ("noop:1\n", "data:ok\n@alice@"),
    ("delete:self@alice\n", "data:6\n@alice@"),
    (
        "llookup:self@alice\n",
        "error:AT0015-key not found : self@alice does not exist in keystore\n@alice@",
    ),
];

const NO_AUTH: &str = "error:AT0401-Exception: Command cannot be executed without auth\n@";

const ANYONE: &[(&str, &str)] = &[
    ("lookup:pub@alice\n", "data:P\n@"),
    (
        "lookup:self@alice\n",
        "error:AT0015-Exception: public:self@alice does not exist in keystore\n@",
    ),
    (
        "lookup:shared@alice\n",
        "error:AT0015-Exception: public:shared@alice does not exist in keystore\n@",
    ),
    (
        "lookup:_hidden@alice\n",
        "error:AT0015-Exception: public:_hidden@alice does not exist in keystore\n@",
    ),
    ("lookup:__phidden@alice\n", "data:PH\n@"),
    (
        "scan\n",
        "data:[\"pub@alice\",\"signing_publickey@alice\"]\n@",
    ),
    (
        "scan:showhidden:true\n",
        "data:[\"pub@alice\",\"signing_publickey@alice\"]\n@",
    ),
    ("llookup:public:pub@alice\n", NO_AUTH),
    ("llookup:self@alice\n", NO_AUTH),
    ("llookup:@bob:shared@alice\n", NO_AUTH),
    ("update:public:pub@alice changed\n", NO_AUTH),
    ("update:meta:pub@alice:ttl:1000\n", NO_AUTH),
    ("delete:public:pub@alice\n", NO_AUTH),
    ("stats:3\n", NO_AUTH),
    ("sync:from:-1:limit:10\n", NO_AUTH),
    ("plookup:pub@alice\n", NO_AUTH),
    ("noop:1\n", "data:ok\n@"),
];

fn each_state_gets_exactly_what_it_may_see(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    for (line, reply) in KEYS {
        owner.ask(line, reply);
    }
    let mut anyone = node.client();
    for (line, reply) in ANYONE {
        anyone.ask(line, reply);
    }
    for (line, reply) in OWNER {
        owner.ask(line, reply);
    }
    // Nothing the unauthenticated connection tried changed the data.
    owner.ask("llookup:public:pub@alice\n", "data:P\n@alice@");
}

both_backends! {
    each_state_gets_exactly_what_it_may_see,
}
