//! One node, a thousand atSigns, each reached on the shared port by its own SNI name.

mod support;

use std::path::Path;

use at_tests::client::Client;
use at_tests::process::{self, Running};
use at_tests::TempDir;
use support::{write_config, Backend};

const COUNT: usize = 1000;

fn a_thousand_atsigns_on_one_node_each_reachable_by_sni(backend: Backend) {
    let dir = TempDir::new("server-many");
    let settings = format!(
        "data_dir = \"{0}/server\"\ndirectory_data_dir = \"{0}/directory\"\n\
         listen = \"127.0.0.1:0\"\npublic_port = 6464\nsni_domain = \"atsign.test\"\n",
        dir.path().display()
    );
    let config_file = write_config(dir.path(), &settings, &backend);
    let binary = Path::new(env!("CARGO_BIN_EXE_at-server"));

    let names: Vec<String> = (0..COUNT).map(|i| format!("@user{i}")).collect();
    let mut args = vec!["--config", config_file.as_str(), "provision"];
    args.extend(names.iter().map(String::as_str));
    let out = process::run(binary, &args, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    // `provisioned @userN at <label>.atsign.test:6464`, then its secret.
    let hosts: Vec<(String, String)> = out
        .lines()
        .filter_map(|line| line.strip_prefix("provisioned "))
        .map(|rest| {
            let (atsign, address) = rest.split_once(" at ").unwrap();
            (
                atsign.to_string(),
                address.rsplit_once(':').unwrap().0.to_string(),
            )
        })
        .collect();
    assert_eq!(hosts.len(), COUNT);
    backend.check_used(&dir.path().join("server"));

    let running = Running::start(
        binary,
        &["--config", &config_file, "serve"],
        &[("AT_SERVER_LOG", "warn")],
        false,
    );
    let ca = dir.path().join("server/tls/ca.pem");
    for (atsign, host) in &hosts {
        let mut client = Client::tls_named(running.addr, &ca, host);
        client.expect(b"@");
        client.send(format!("from:{atsign}\n").as_bytes());
        let reply = client.read_until(b"\n@");
        assert!(
            reply.starts_with("data:_") && reply.contains(&format!("{atsign}:")),
            "{host}: {reply}"
        );
    }
}

both_backends! {
    a_thousand_atsigns_on_one_node_each_reachable_by_sni,
}
