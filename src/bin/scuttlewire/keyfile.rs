//! `--key-file`: the agent's keys on disk, read at start and rewritten after
//! every key change made through the control socket, so that a restarted
//! agent comes back with the rotated keyring.
//!
//! The format: one base64 key per line, the first one primary; blank
//! lines and lines starting with `#` are ignored. A file of one key (what
//! `scuttlewire keygen > file` makes) is the simplest case.
//!
//! The library's [`Keyring`] names keys by id and never hands their bytes
//! back (rightly: it is shared with the transport). To write the file
//! again, [`KeyFile`] keeps its own copy of every key the agent loaded or
//! installed; what it writes is the keyring's current list, primary first,
//! each id looked up in that copy. Errors name the file and a line number,
//! never key material.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use scuttlewire::seal::{Key, KeyId, Keyring};

/// Largest key file read: 44 characters a key, with room for many keys and
/// comments; anything larger is the wrong file.
const MAX_FILE: u64 = 64 * 1024;

/// The agent's key file and the material of every key it may write to it.
pub struct KeyFile {
    path: PathBuf,
    material: HashMap<KeyId, Key>,
}

impl KeyFile {
    /// Reads `path`; returns the file with a keyring holding its keys (the
    /// first primary). The error names the file (and the line).
    pub fn load(path: &Path) -> Result<(KeyFile, Keyring), String> {
        let shown = path.display();
        let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let mode = file.metadata().map_or(0, |m| m.permissions().mode());
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %shown,
                mode = format_args!("{:o}", mode & 0o777),
                "key file is readable by group or others; chmod 600 it"
            );
        }
        let mut bytes = Vec::new();
        let read = file.take(MAX_FILE + 1).read_to_end(&mut bytes);
        let parsed = match read {
            Err(e) => Err(format!("cannot read {shown}: {e}")),
            Ok(_) if bytes.len() as u64 > MAX_FILE => Err(format!(
                "{shown} is larger than {MAX_FILE} bytes; is it the right file?"
            )),
            Ok(_) => std::str::from_utf8(&bytes)
                .map_err(|_| format!("{shown} is not text (base64 keys, one a line)"))
                .and_then(parse)
                .map_err(|e| format!("{shown}: {e}")),
        };
        bytes.fill(0);
        let keys = parsed?;
        let mut keys = keys.into_iter();
        let Some(primary) = keys.next() else {
            return Err(format!("{shown} holds no key"));
        };
        let keyring = Keyring::new(primary.clone());
        let mut material = HashMap::from([(primary.id(), primary)]);
        for key in keys {
            keyring.install(key.clone());
            material.insert(key.id(), key);
        }
        let file = KeyFile {
            path: path.to_path_buf(),
            material,
        };
        Ok((file, keyring))
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps a copy of `key`, so [`KeyFile::save`] can write it once it is
    /// installed.
    pub fn remember(&mut self, key: Key) {
        self.material.insert(key.id(), key);
    }

    /// Drops the copy of a key that was removed from the keyring.
    pub fn forget(&mut self, id: KeyId) {
        self.material.remove(&id);
    }

    /// Rewrites the file with the keys `ids` (the keyring's list, primary
    /// first): a temporary file of mode 0600 beside it, synced, then renamed
    /// over it, so a crash leaves the old file or the new one, never half
    /// of either.
    pub fn save(&self, ids: &[KeyId]) -> Result<(), String> {
        let shown = self.path.display();
        let mut text = String::new();
        for id in ids {
            let key = self.material.get(id).ok_or_else(|| {
                format!("key {id} is in the keyring but this agent never saw its material")
            })?;
            text.push_str(&key.to_base64());
            text.push('\n');
        }
        let name = self
            .path
            .file_name()
            .map_or_else(|| "keys".into(), |n| n.to_string_lossy().into_owned());
        let temp = self
            .path
            .with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let written = write_private(&temp, text.as_bytes());
        // The text held every key: overwrite it before it is freed.
        let mut text = text.into_bytes();
        text.fill(0);
        std::hint::black_box(&text);
        written
            .and_then(|()| std::fs::rename(&temp, &self.path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                format!("cannot rewrite {shown}: {e}")
            })
    }
}

/// Creates `path` (which must not exist) with mode 0600 and writes `data`
/// to disk.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// The keys of a key file's text, in order; a duplicate is kept once.
fn parse(text: &str) -> Result<Vec<Key>, String> {
    let mut keys: Vec<Key> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = Key::from_base64(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        if keys.iter().all(|k| k.id() != key.id()) {
            keys.push(key);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::from_bytes(&[byte; 32]).unwrap()
    }

    /// A scratch directory removed at the end of the test.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir()
                .join(format!("scuttlewire-keyfile-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_first_key_is_primary_and_comments_are_skipped() {
        let text = format!(
            "# rotated 2025-01-01\n\n  {}  \n# old\n{}\n{}\n",
            key(2).to_base64(),
            key(1).to_base64(),
            key(2).to_base64()
        );
        let ids: Vec<KeyId> = parse(&text).unwrap().iter().map(Key::id).collect();
        assert_eq!(
            ids,
            [key(2).id(), key(1).id()],
            "the duplicate is kept once"
        );
        let err = parse(&format!("{}\nnot-a-key\n", key(1).to_base64())).unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }

    #[test]
    fn a_one_key_file_loads_and_an_empty_one_is_refused() {
        let dir = Scratch::new("one");
        let path = dir.0.join("cluster.key");
        std::fs::write(&path, format!("{}\n", key(7).to_base64())).unwrap();
        let (_, ring) = KeyFile::load(&path).unwrap();
        assert_eq!(ring.list(), [key(7).id()]);
        std::fs::write(&path, "# nothing yet\n").unwrap();
        let err = KeyFile::load(&path).err().unwrap();
        assert!(err.contains("holds no key"), "{err}");
        let err = KeyFile::load(&dir.0.join("absent")).err().unwrap();
        assert!(err.contains("absent"), "{err}");
    }

    #[test]
    fn save_writes_the_keyring_primary_first_with_mode_600() {
        let dir = Scratch::new("save");
        let path = dir.0.join("cluster.key");
        std::fs::write(&path, format!("{}\n", key(1).to_base64())).unwrap();
        let (mut file, ring) = KeyFile::load(&path).unwrap();
        file.remember(key(2));
        ring.install(key(2));
        ring.use_key(key(2).id()).unwrap();
        file.save(&ring.list()).unwrap();
        let (_, reloaded) = KeyFile::load(&path).unwrap();
        assert_eq!(reloaded.list(), [key(2).id(), key(1).id()]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        ring.remove(key(1).id()).unwrap();
        file.forget(key(1).id());
        file.save(&ring.list()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", key(2).to_base64()));
        assert_eq!(
            std::fs::read_dir(&dir.0).unwrap().count(),
            1,
            "no temp file left"
        );

        let err = file.save(&[key(9).id()]).unwrap_err();
        assert!(err.contains("never saw"), "{err}");
    }
}
