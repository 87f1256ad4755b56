"""Signs in, claims one task and votes once through the client that
openapi-python-client generated from worker-api's document.

Usage: generated_client_vote.py CLIENT_DIR BASE_URL USERNAME PASSWORD
Prints one JSON line: {"task_id": ..., "vote_id": ...}.
"""

import json
import sys
import time

client_dir, base_url, username, password = sys.argv[1:5]
sys.path.insert(0, client_dir)

from spotcheck_worker_api_client import AuthenticatedClient, Client  # noqa: E402
from spotcheck_worker_api_client.api.auth import auth_login  # noqa: E402
from spotcheck_worker_api_client.api.tasks import tasks_claim  # noqa: E402
from spotcheck_worker_api_client.api.votes import votes_vote  # noqa: E402
from spotcheck_worker_api_client.models import Claimed, Login, TokenPair, Verdict, VoteBody, VoteCreated  # noqa: E402

anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
pair = auth_login.sync(client=anonymous, body=Login(username=username, password=password))
assert isinstance(pair, TokenPair), f"sign-in answered {pair!r}"
assert pair.token_type == "Bearer"

client = AuthenticatedClient(base_url=base_url, token=pair.access_token, raise_on_unexpected_status=True)
deadline = time.monotonic() + 30
claimed = None
while claimed is None:
    response = tasks_claim.sync_detailed(client=client)
    if response.status_code == 200:
        claimed = response.parsed
    elif response.status_code == 204 and time.monotonic() < deadline:
        time.sleep(0.05)
    else:
        raise SystemExit(f"claim answered {response.status_code}: {response.content!r}")
assert isinstance(claimed, Claimed), f"claim parsed as {claimed!r}"
assert claimed.listing.listing_id, "the claim carries its listing"

vote = votes_vote.sync(
    task_id=claimed.task_id,
    client=client,
    body=VoteBody(
        lease_token=claimed.lease_token,
        verdict=Verdict.COUNTERFEIT,
        reasons=["logo_mismatch"],
        note="generated client",
    ),
)
assert isinstance(vote, VoteCreated), f"vote answered {vote!r}"
print(json.dumps({"task_id": str(claimed.task_id), "vote_id": str(vote.vote_id)}))
