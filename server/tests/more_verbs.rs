//! `update:json`, `batch` and `plookup` over real TLS, against the real binary: the exact reply
//! bytes, the errors, and that the connection keeps answering after each error (none of these
//! errors closes it in the reference). See docs/protocol.md#update, docs/protocol.md#batch and
//! docs/protocol.md#plookup; batch shapes from the reference's `batch_verb_handler.dart` and
//! at_commons' `Response.toJson`.

mod support;

use support::*;

fn update_json_stores_a_key_that_update_would_store(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask(
        "update:json:{\"atKey\":\"phone.wavi\",\"value\":\"+1 555\",\"sharedBy\":\"@alice\",\
         \"metadata\":{\"isPublic\":true,\"ttr\":-1,\"isEncrypted\":false}}\n",
        "data:0\n@alice@",
    );
    owner.ask("llookup:public:phone.wavi@alice\n", "data:+1 555\n@alice@");
    owner.ask(
        "update:json:{\"atKey\":\"note\",\"value\":\"v\",\"sharedWith\":\"@bob\"}\n",
        "data:1\n@alice@",
    );
    owner.ask("llookup:@bob:note@alice\n", "data:v\n@alice@");
    owner.ask(
        "stats:3\n",
        "data: [{\"id\":\"3\",\"name\":\"lastCommitID\",\"value\":\"1\"}]\n@alice@",
    );
    let mut anyone = node.client();
    anyone.ask("lookup:phone.wavi@alice\n", "data:+1 555\n@");
}

fn update_json_errors_are_answered_and_the_connection_stays_open(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    for (line, reply) in [
        (
            "update:json:{\"atKey\":\n",
            "error:AT0003-Invalid syntax : Invalid syntax. e.g update:@bob:phone@alice 123\n@alice@",
        ),
        (
            "update:json:{\"atKey\":\"phone\",\"value\":\"1\",\"sharedBy\":\"@bob\"}\n",
            "error:AT0016-Invalid key : Invalid update command - sharedBy atsign @bob should be same as current atsign @alice\n@alice@",
        ),
        (
            "update:json:{\"atKey\":\"a:b\",\"value\":\"1\"}\n",
            "error:AT0016-Invalid key : You may not update keys of type KeyType.invalidKey\n@alice@",
        ),
        (
            "update:json:{\"atKey\":\"n\",\"value\":5}\n",
            "error:AT0003-Invalid syntax : update:json value must be a string or null\n@alice@",
        ),
        (
            "update:json:{\"atKey\":\"t\",\"value\":\"1\",\"metadata\":{\"ttl\":-5}}\n",
            "error:AT0003-Invalid syntax : Valid value for TTL should be greater than or equal to 0\n@alice@",
        ),
    ] {
        owner.ask(line, reply);
        still_open(&mut owner, "@alice@");
    }
    let mut anyone = node.client();
    anyone.ask(
        "update:json:{\"atKey\":\"k\",\"value\":\"v\"}\n",
        "error:AT0401-Exception: Command cannot be executed without auth\n@",
    );
    still_open(&mut anyone, "@");
}

fn batch_runs_each_command_in_order_and_answers_by_id(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask(
        "batch:[{\"id\":1,\"command\":\"update:public:a@alice 1\"},\
         {\"id\":2,\"command\":\"llookup:public:a@alice\"},\
         {\"id\":3,\"command\":\"delete:public:a@alice\"}]\n",
        "data:[{\"id\":1,\"response\":{\"data\":\"0\"}},\
         {\"id\":2,\"response\":{\"data\":\"1\"}},\
         {\"id\":3,\"response\":{\"data\":\"1\"}}]\n@alice@",
    );
    // Each command committed as if sent alone.
    owner.ask(
        "sync:from:-1:limit:10\n",
        "data:[{\"atKey\":\"public:a@alice\",\"value\":null,\"metadata\":null,\"commitId\":1,\"operation\":\"-\"}]\n@alice@",
    );
    owner.ask("batch:[]\n", "data:[]\n@alice@");
}

fn batch_answers_failing_commands_with_error_entries_and_runs_the_rest(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask(
        "batch:[{\"id\":1,\"command\":\"delete:public:publickey@alice\"},\
         {\"id\":2,\"command\":\"update:phone@bob 1\"},\
         {\"id\":3,\"command\":\"llookup:nothing@alice\"},\
         {\"id\":4,\"command\":\"llookup:\"},\
         {\"id\":5,\"command\":\"hello\"},\
         {\"id\":6,\"command\":\"update:note@alice v\"}]\n",
        "data:[{\"id\":1,\"response\":{\"error_code\":\"AT0009\",\"error_message\":\"UnAuthorized client in request\"}},\
         {\"id\":2,\"response\":{\"error_code\":\"AT0016\",\"error_message\":\"Invalid key\"}},\
         {\"id\":3,\"response\":{\"error_code\":\"AT0015\",\"error_message\":\"key not found\"}},\
         {\"id\":4,\"response\":{\"error_code\":\"AT0003\",\"error_message\":\"Invalid syntax\"}},\
         {\"id\":6,\"response\":{\"data\":\"0\"}}]\n@alice@",
    );
    owner.ask("llookup:note@alice\n", "data:v\n@alice@");
    // Verbs the connection answers itself are not run inside a batch.
    owner.ask(
        "batch:[{\"id\":1,\"command\":\"from:@alice\"},{\"id\":2,\"command\":\"noop:0\"}]\n",
        "data:[{\"id\":1,\"response\":{\"error_code\":\"AT0011\",\"error_message\":\"Internal server exception\"}},\
         {\"id\":2,\"response\":{\"error_code\":\"AT0011\",\"error_message\":\"Internal server exception\"}}]\n@alice@",
    );
    still_open(&mut owner, "@alice@");
}

fn batch_that_is_not_a_list_of_commands_is_at0003_and_the_connection_stays_open(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    let usage = "error:AT0003-Invalid syntax : Invalid syntax. e.g batch:[{\"id\":1,\"command\":\"llookup:phone@alice\"}]\n@alice@";
    for line in [
        "batch:[{\"id\":1,\n",
        "batch:{\"id\":1,\"command\":\"scan\"}\n",
        "batch:[{\"command\":\"scan\"}]\n",
    ] {
        owner.ask(line, usage);
        still_open(&mut owner, "@alice@");
    }
    let mut anyone = node.client();
    anyone.ask(
        "batch:[]\n",
        "error:AT0401-Exception: Command cannot be executed without auth\n@",
    );
    still_open(&mut anyone, "@");
}

fn plookup_of_own_keys_reads_the_public_key(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask(
        "update:public:publickey@alice MIIBIjAN\n",
        "data:0\n@alice@",
    );
    owner.ask("update:phone@alice self\n", "data:1\n@alice@");
    owner.ask("plookup:publickey@alice\n", "data:MIIBIjAN\n@alice@");
    owner.ask(
        "plookup:bypassCache:true:publickey@alice\n",
        "data:MIIBIjAN\n@alice@",
    );
    // The metadata holds the time of the update: checked around it.
    owner.send(b"plookup:all:publickey@alice\n");
    let all = owner.read_until(b"\n@alice@");
    assert!(
        all.starts_with(
            "data:{\"key\":\"public:publickey@alice\",\"data\":\"MIIBIjAN\",\"metaData\":{\"createdBy\":\"@alice\","
        ) && all.ends_with("}}\n@alice@"),
        "{all}"
    );
    owner.ask(
        "plookup:phone@alice\n",
        "error:AT0015-key not found : Exception: public:phone@alice does not exist in keystore\n@alice@",
    );
    still_open(&mut owner, "@alice@");
}

fn plookup_of_another_atsign_without_a_directory_is_at0007_and_the_connection_stays_open(
    backend: Backend,
) {
    // No directory runs for this node: @bob's server cannot be found.
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    // The reason is logged; the reply names no address and no TLS detail.
    owner.ask(
        "plookup:publickey@bob\n",
        "error:AT0007-Secondary server not found : the atDirectory is unreachable\n@alice@",
    );
    still_open(&mut owner, "@alice@");
    let mut anyone = node.client();
    anyone.ask(
        "plookup:publickey@alice\n",
        "error:AT0401-Exception: Command cannot be executed without auth\n@",
    );
    still_open(&mut anyone, "@");
}

both_backends! {
    update_json_stores_a_key_that_update_would_store,
    update_json_errors_are_answered_and_the_connection_stays_open,
    batch_runs_each_command_in_order_and_answers_by_id,
    batch_answers_failing_commands_with_error_entries_and_runs_the_rest,
    batch_that_is_not_a_list_of_commands_is_at0003_and_the_connection_stays_open,
    plookup_of_own_keys_reads_the_public_key,
    plookup_of_another_atsign_without_a_directory_is_at0007_and_the_connection_stays_open,
}
