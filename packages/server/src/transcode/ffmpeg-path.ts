/** Which ffmpeg to run: FFMPEG_PATH, else `ffmpeg` on PATH (DESIGN.md "ffmpeg"). */
export function ffmpegPath(): string {
  return process.env['FFMPEG_PATH'] ?? 'ffmpeg';
}
