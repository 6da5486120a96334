"""Demo: face detection and the live webcam / video CAM demo."""
