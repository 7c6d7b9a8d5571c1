"""Speech: telephone audio conversion and on-device transcription with vosk."""
