"""The Ray Serve application over real HTTP on a real local Ray cluster: answers, refusals, and it stays up."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image


def test_json_batches_single_images_and_png_uploads_get_the_right_digits(served, champion_server, prepared_dataset):
    images = np.load(prepared_dataset / "test_images.npy")[:64]
    labels = np.load(prepared_dataset / "test_labels.npy")[:64]

    status, health = served.request("healthz")
    assert status == 200 and health == {"status": "ok", "model": f"models:/{champion_server.name}@champion",
                                         "version": champion_server.version}

    status, answer = served.predict({"pixels": images.tolist()})
    assert status == 200 and answer["version"] == champion_server.version, answer
    digits = np.array([p["digit"] for p in answer["predictions"]])
    assert len(digits) == 64 and (digits == labels).mean() >= 0.9
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-3 for p in answer["predictions"])

    status, raw = served.request("predict", images.tobytes(), "application/octet-stream")  # 64 x 784 uint8
    assert status == 200 and raw["predictions"] == answer["predictions"], "raw pixels answer as JSON pixels do"

    status, one = served.predict(images[0].tolist())  # a bare nested list, one image
    assert status == 200 and one["predictions"][0]["digit"] == digits[0]

    png = io.BytesIO()
    Image.fromarray(255 - images[1]).resize((84, 84)).save(png, format="PNG")  # dark on light, bigger
    status, upload = served.request("predict", png.getvalue(), "image/png")
    assert status == 200 and upload["predictions"][0]["digit"] == digits[1], upload

    # concurrent single-image requests are batched on the server and each gets its own answer
    def single(i):
        return served.predict({"pixels": images[i].tolist()})[1]["predictions"][0]["digit"]

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(single, range(32))) == digits[:32].tolist()


def test_bad_requests_get_a_4xx_naming_the_problem_and_the_replica_keeps_answering(served, prepared_dataset):
    image = np.load(prepared_dataset / "test_images.npy")[0]
    cases = [
        (b"{not json", "application/json", 400, "not JSON"),
        (json.dumps({"pixels": [[1, 2], [3, 4]]}).encode(), "application/json", 400, "expected shape"),
        (json.dumps({"pixels": (image.astype(int) + 300).tolist()}).encode(), "application/json", 400, "0..255"),
        (json.dumps({"pixels": (image / 255).tolist()}).encode(), "application/json", 400, "0..1"),
        (json.dumps({"pixels": [[["x"] * 28] * 28]}).encode(), "application/json", 400, "expected numbers"),
        (json.dumps({"image": []}).encode(), "application/json", 400, "\"pixels\""),
        (json.dumps({"pixels": [image.tolist()] * 300}).encode(), "application/json", 413, "batch too large"),
        (b" " * (5 << 20), "application/json", 413, "body too large"),
        (b"\x89PNG\r\n\x1a\n broken", "image/png", 400, "not a readable image"),
        (image.tobytes()[:-1], "application/octet-stream", 400, "expected N x 784 bytes"),
        (image.tobytes() * 300, "application/octet-stream", 413, "batch too large"),
    ]
    for body, kind, status, message in cases:
        got, answer = served.request("predict", body, kind)
        assert got == status and message in answer["error"], (message, got, answer)
    assert served.request("healthz")[0] == 200
    status, answer = served.predict({"pixels": image.tolist()})
    assert status == 200 and answer["predictions"][0]["digit"] in range(10)
    assert served.process.alive()
