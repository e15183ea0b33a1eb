"""The --display overlay: the camera frame with the prediction and per-modality badges (OpenCV window)."""
from __future__ import annotations

import cv2
import numpy as np

WINDOW = "KARMMA live"


def show(frame_rgb: np.ndarray, record: dict, reasons: dict[str, str | None]) -> bool:
    """Draw and show one captured frame (HxWx3 uint8 RGB); False when the user closed the window or pressed
    q / Esc."""
    image = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
    scale = max(1.0, 480.0 / image.shape[0])
    if scale > 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    text = (f"{record['verb']} {record['noun']} {record['confidence']:.2f}" if record.get("verb")
            else record.get("state", ""))
    cv2.putText(image, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    for i, m in enumerate(("V", "F", "A")):
        ok = reasons.get(m) is None
        colour = (60, 200, 60) if ok else (60, 60, 220)
        cv2.putText(image, m if ok else f"{m}: {reasons[m]}", (10, 60 + 26 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                    colour, 2, cv2.LINE_AA)
    cv2.imshow(WINDOW, image)
    key = cv2.waitKey(1) & 0xFF
    return key not in (ord("q"), 27) and cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) >= 1


def close() -> None:
    cv2.destroyAllWindows()
