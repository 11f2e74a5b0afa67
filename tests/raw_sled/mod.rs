//! Opening a database folder with sled directly, as the tests that look at or damage the raw
//! records do. Right after an audiencedb handle is dropped, sled's background writes may hold
//! the folder's lock for a moment (the library's own open waits for it too): this waits up to
//! five seconds for it.

use std::path::Path;
use std::time::{Duration, Instant};

pub fn open(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if Instant::now() > deadline => panic!("{}: {e}", path.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
