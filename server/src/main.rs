//! `at-server`: not built yet. The atServer is issue 3; this crate holds its place in the workspace.

fn main() {
    eprintln!("at-server is not implemented yet; see the README");
    std::process::exit(2);
}
