"""Docker HEALTHCHECK: healthy only when Triton's /v2/health/ready answers 200 (all models loaded)."""
import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('TRITON_HTTP_PORT', '8000')}/v2/health/ready"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception:
    sys.exit(1)
