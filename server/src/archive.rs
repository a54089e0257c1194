//! A folder of an export streamed as a zip (stored, not deflated: float
//! tensors barely compress) or a ustar tar, without holding it in memory:
//! a blocking task writes the archive into a channel the response body reads.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use futures_util::stream;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Zip,
    Tar,
}

impl ArchiveKind {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "zip" => Some(Self::Zip),
            "tar" => Some(Self::Tar),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Tar => "tar",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Zip => "application/zip",
            Self::Tar => "application/x-tar",
        }
    }
}

/// Sends what is written as body chunks; a closed receiver (the client
/// went away) ends the writing with an error.
struct ChannelWriter {
    sender: mpsc::Sender<std::io::Result<Bytes>>,
    buffer: Vec<u8>,
}

const CHUNK: usize = 1 << 20;

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

/// The files of `dir` (not recursing: exports are flat), sorted.
fn files_of(dir: &Path) -> std::io::Result<Vec<(String, PathBuf, u64)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() {
            files.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
                meta.len(),
            ));
        }
    }
    files.sort();
    Ok(files)
}

/// A body streaming `dir` as an archive whose entries sit under `folder/`.
pub fn stream_folder(dir: PathBuf, folder: String, kind: ArchiveKind) -> Body {
    let (sender, receiver) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            sender: sender.clone(),
            buffer: Vec::with_capacity(CHUNK),
        };
        let result = match kind {
            ArchiveKind::Zip => write_zip(&dir, &folder, &mut out),
            ArchiveKind::Tar => write_tar(&dir, &folder, &mut out),
        }
        .and_then(|()| out.flush());
        if let Err(error) = result {
            if error.kind() != std::io::ErrorKind::BrokenPipe {
                tracing::error!(%error, dir = %dir.display(), "streaming an archive");
                let _ = sender.blocking_send(Err(error));
            }
        }
    });
    Body::from_stream(stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    }))
}

fn write_zip(dir: &Path, folder: &str, out: &mut ChannelWriter) -> std::io::Result<()> {
    let mut zip = zip::ZipWriter::new_stream(out);
    for (name, path, size) in files_of(dir)? {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(size >= u64::from(u32::MAX));
        zip.start_file(format!("{folder}/{name}"), options)
            .map_err(std::io::Error::other)?;
        std::io::copy(&mut std::fs::File::open(&path)?, &mut zip)?;
    }
    zip.finish().map_err(std::io::Error::other)?;
    Ok(())
}

/// POSIX ustar: a 512-byte header per file, its data padded to 512, and two
/// zero blocks at the end.
fn write_tar(dir: &Path, folder: &str, out: &mut ChannelWriter) -> std::io::Result<()> {
    for (name, path, size) in files_of(dir)? {
        out.write_all(&tar_header(&format!("{folder}/{name}"), size)?)?;
        let copied = std::io::copy(&mut std::fs::File::open(&path)?.take(size), out)?;
        if copied != size {
            return Err(std::io::Error::other(format!(
                "{} changed while it was archived",
                path.display()
            )));
        }
        let padding = (512 - size % 512) % 512;
        out.write_all(&vec![0u8; padding as usize])?;
    }
    out.write_all(&[0u8; 1024])
}

fn tar_header(name: &str, size: u64) -> std::io::Result<[u8; 512]> {
    let mut header = [0u8; 512];
    if name.len() > 100 {
        return Err(std::io::Error::other(format!(
            "{name}: name too long for tar"
        )));
    }
    let mut put = |offset: usize, field: &[u8]| {
        header[offset..offset + field.len()].copy_from_slice(field);
    };
    put(0, name.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    // Sizes up to 8 GiB fit 11 octal digits; larger use the base-256 form.
    if size < 8 << 30 {
        put(124, format!("{size:011o}\0").as_bytes());
    } else {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[4..].copy_from_slice(&size.to_be_bytes());
        put(124, &field);
    }
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    put(136, format!("{mtime:011o}\0").as_bytes());
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    // The checksum is taken with its own field as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::tar_header;

    #[test]
    fn tar_headers_carry_name_size_and_a_valid_checksum() {
        let header = tar_header("export-1/config.json", 1234).unwrap();
        assert_eq!(&header[..20], b"export-1/config.json");
        assert_eq!(&header[124..136], b"00000002322\0");
        let stored = std::str::from_utf8(&header[148..154]).unwrap();
        let mut blank = header;
        blank[148..156].copy_from_slice(b"        ");
        let sum: u32 = blank.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        assert_eq!(&header[257..263], b"ustar\0");
    }
}
