//! The `audiencedb` command line.

fn main() {
    println!("audiencedb {}", env!("CARGO_PKG_VERSION"));
}
