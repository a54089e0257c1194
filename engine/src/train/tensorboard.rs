//! TensorBoard event files (`tensorboard: true`): a run's train and
//! validation losses, learning rate, tokens/s and peak memory as scalars,
//! in `tensorboard/` of the run folder, for TensorBoard (or any reader of
//! its format) on this machine. Nothing is sent anywhere.
//!
//! The format is TensorFlow's TFRecord of `Event` protobufs, written here by
//! hand (it is small): each record is the payload's length (u64 LE), the
//! masked CRC-32C of those 8 bytes, the payload, and its masked CRC-32C.
//! The payload is `Event { wall_time = 1 (double), step = 2 (int64),
//! file_version = 3 (string) | summary = 5 { value = 1 { tag = 1 (string),
//! simple_value = 2 (float) } } }`; a file starts with an event whose
//! `file_version` is `brain.Event:2`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};

use crate::protocol::Event;

/// The folder under a run's folder that holds its event files.
pub const TENSORBOARD_DIR: &str = "tensorboard";

/// One event file, opened for the whole run (a resumed run starts another:
/// TensorBoard reads every file of the folder).
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir` and a new event file in it.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
        let now = wall_time();
        // TensorBoard finds event files by `tfevents` in the name; the pid
        // keeps two files of the same second apart.
        let path = dir.join(format!(
            "events.out.tfevents.{}.loralab.{}",
            now as u64,
            std::process::id()
        ));
        let file = File::create_new(&path)
            .map_err(|e| anyhow!("cannot create {}: {e}", path.display()))?;
        let mut writer = Self { file, path };
        let mut event = Vec::new();
        put_double(&mut event, 1, now);
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.write_record(&event)?;
        Ok(writer)
    }

    /// Writes the scalars an event carries (reports and evaluations; the
    /// test loss at the end), each record in one write, so a run killed
    /// mid-way leaves whole records behind.
    pub fn observe(&mut self, event: &Event) -> Result<()> {
        let (step, scalars): (usize, Vec<(&str, f64)>) = match event {
            Event::Report {
                step,
                train_loss,
                learning_rate,
                tokens_per_sec,
                peak_memory_gb,
                ..
            } => (
                *step,
                vec![
                    ("train/loss", *train_loss),
                    ("train/learning_rate", *learning_rate),
                    ("train/tokens_per_sec", *tokens_per_sec),
                    ("train/peak_memory_gb", *peak_memory_gb),
                ],
            ),
            Event::Eval { step, val_loss, .. } => (*step, vec![("val/loss", *val_loss)]),
            Event::Done {
                step,
                test_loss: Some(loss),
                ..
            } => (*step, vec![("test/loss", *loss)]),
            _ => return Ok(()),
        };
        let mut records = Vec::new();
        for (tag, value) in scalars {
            records.extend(record(&scalar_event(
                wall_time(),
                step as i64,
                tag,
                value as f32,
            )));
        }
        self.file
            .write_all(&records)
            .map_err(|e| anyhow!("cannot write {}: {e}", self.path.display()))
    }

    fn write_record(&mut self, payload: &[u8]) -> Result<()> {
        self.file
            .write_all(&record(payload))
            .map_err(|e| anyhow!("cannot write {}: {e}", self.path.display()))
    }
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `Event { wall_time, step, summary { value { tag, simple_value } } }`.
fn scalar_event(wall_time: f64, step: i64, tag: &str, value: f32) -> Vec<u8> {
    let mut summary_value = Vec::new();
    put_bytes(&mut summary_value, 1, tag.as_bytes());
    put_key(&mut summary_value, 2, 5);
    summary_value.extend(value.to_le_bytes());
    let mut summary = Vec::new();
    put_bytes(&mut summary, 1, &summary_value);
    let mut event = Vec::new();
    put_double(&mut event, 1, wall_time);
    put_key(&mut event, 2, 0);
    put_varint(&mut event, step as u64);
    put_bytes(&mut event, 5, &summary);
    event
}

/// One TFRecord: length, its masked CRC, the payload, its masked CRC.
fn record(payload: &[u8]) -> Vec<u8> {
    let length = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend(length);
    out.extend(masked_crc32c(&length).to_le_bytes());
    out.extend(payload);
    out.extend(masked_crc32c(payload).to_le_bytes());
    out
}

/// A protobuf field key: the field number and the wire type (0 varint, 1
/// 64-bit, 2 length-delimited, 5 32-bit).
fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    put_varint(out, u64::from((field << 3) | wire_type));
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_double(out: &mut Vec<u8>, field: u32, value: f64) {
    put_key(out, field, 1);
    out.extend(value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend(bytes);
}

/// TFRecord's masked CRC: rotated right by 15 bits plus a constant, so a
/// CRC stored inside the data it covers does not check out by accident.
fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: the
/// records are a few dozen bytes, a table would buy nothing.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        // RFC 3720 (iSCSI) B.4 and the catalogue's check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn varints_and_keys_follow_protobuf() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xAC, 0x02]);
        let mut key = Vec::new();
        put_key(&mut key, 5, 2);
        assert_eq!(key, [0x2A]);
    }
}
