//! Small media files for the conformance fixtures, encoded here rather than pasted in as opaque
//! base64: a solid-colour PNG and a short sine-tone WAV, both valid files any decoder accepts.
//!
//! The PNG uses stored (uncompressed) deflate blocks, which every inflater reads and which need
//! no compression code; the checksums (CRC-32 per chunk, Adler-32 over the zlib stream) are
//! computed, so the file is well formed byte for byte.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The MIME type of [`png_base64`].
pub(crate) const PNG_MIME: &str = "image/png";

/// The MIME type of [`wav_base64`].
pub(crate) const WAV_MIME: &str = "audio/wav";

/// A 1x1 red PNG, base64-encoded (computed once).
pub(crate) fn png_base64() -> &'static str {
    static PNG: LazyLock<String> = LazyLock::new(|| STANDARD.encode(solid_png(1, 1, [255, 0, 0])));
    &PNG
}

/// 50 ms of a 440 Hz tone as 8 kHz mono 16-bit PCM WAV, base64-encoded (computed once).
pub(crate) fn wav_base64() -> &'static str {
    static WAV: LazyLock<String> = LazyLock::new(|| STANDARD.encode(sine_wav(440.0, 8_000, 400)));
    &WAV
}

/// Encodes a `width` x `height` RGB image of one colour as a PNG file.
pub(crate) fn solid_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    // Each scanline starts with filter type 0 (none), then the pixels.
    let mut row = vec![0];
    row.extend(rgb.repeat(width as usize));
    let raw = row.repeat(height as usize);

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 2 (truecolour), deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    push_chunk(&mut png, b"IHDR", &ihdr);
    push_chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    push_chunk(&mut png, b"IEND", &[]);
    png
}

fn push_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    // Chunks are far below 4 GiB here; saturating keeps the conversion total anyway.
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
    png.extend_from_slice(&length.to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream holding `data` in stored deflate blocks (at most 65535 bytes each).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    // CMF 0x78 (deflate, 32 KiB window) and FLG 0x01 make the header a multiple of 31.
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(usize::from(u16::MAX)).peekable();
    if blocks.peek().is_none() {
        // An empty stream still needs one final block.
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        out.push(u8::from(last));
        let length = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&(!length).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// CRC-32 (IEEE, as PNG uses it), bit by bit: the inputs here are a few bytes long.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    const MODULUS: u32 = 65_521;
    let (mut a, mut b) = (1_u32, 0_u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % MODULUS;
        b = (b + a) % MODULUS;
    }
    (b << 16) | a
}

/// Encodes `samples` samples of a sine tone at half amplitude as mono 16-bit PCM WAV.
pub(crate) fn sine_wav(frequency: f64, sample_rate: u32, samples: u32) -> Vec<u8> {
    let data_len = samples * 2;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16_u32.to_le_bytes());
    // Format 1 (PCM), one channel.
    wav.extend_from_slice(&1_u16.to_le_bytes());
    wav.extend_from_slice(&1_u16.to_le_bytes());
    wav.extend_from_slice(&sample_rate.to_le_bytes());
    // Byte rate and block align for 16-bit mono.
    wav.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    wav.extend_from_slice(&2_u16.to_le_bytes());
    wav.extend_from_slice(&16_u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    let step = std::f64::consts::TAU * frequency / f64::from(sample_rate);
    for index in 0..samples {
        let level = (f64::from(index) * step).sin() * f64::from(i16::MAX / 2);
        // |level| stays below i16::MAX / 2, so the cast cannot saturate.
        wav.extend_from_slice(&(level.round() as i16).to_le_bytes());
    }
    wav
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn png_is_well_formed() {
        let png = solid_png(1, 1, [255, 0, 0]);
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[16..24], &[0, 0, 0, 1, 0, 0, 0, 1]);
        assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
        let decoded = STANDARD.decode(png_base64()).unwrap_or_default();
        assert_eq!(decoded, png);
        // A larger image spans several stored blocks and still ends with one final block.
        let big = zlib_stored(&vec![7; 70_000]);
        assert_eq!(big[2], 0);
        assert_eq!(big[2 + 5 + 65_535], 1);
    }

    #[test]
    fn wav_header_describes_the_samples() {
        let wav = sine_wav(440.0, 8_000, 400);
        assert_eq!(wav.len(), 44 + 800);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(
            u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
            8_000
        );
        assert_eq!(&wav[36..40], b"data");
        assert_eq!(
            u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]),
            800
        );
        // The first sample of a sine is silence; a later one is not.
        assert_eq!(&wav[44..46], &[0, 0]);
        assert_ne!(&wav[48..50], &[0, 0]);
        assert!(!wav_base64().is_empty());
    }
}
