"""Drives Qalxan's TAXII 2.1 server with the real `taxii2-client` package.

Usage: python3 client_check.py CONFIG.json
CONFIG: {"base": "http://127.0.0.1:PORT", "analyst": TOKEN, "partner": TOKEN,
         "cert": ID, "shared": ID, "partner_inbox": ID, "other_inbox": ID, "bundle": PATH}
Prints one line per check and exits non-zero on the first failure.
"""
import json
import sys

import requests
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

cfg = json.load(open(sys.argv[1]))
base = cfg["base"]
root_url = f"{base}/taxii2/api/"


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}")
        sys.exit(1)
    print(f"ok: {what}")


# Discovery and the API root, with Basic authentication (the token as the password).
server = Server(f"{base}/taxii2/", user="analyst", password=cfg["analyst"])
check(server.title == "Qalxan TAXII server", f"discovery title {server.title!r}")
check(len(server.api_roots) == 1 and server.api_roots[0].url == root_url, "one API root")
check(server.default.url == root_url, "default API root")

analyst_root = ApiRoot(root_url, user="analyst", password=cfg["analyst"])
check("application/taxii+json;version=2.1" in analyst_root.versions, "API root versions")
ids = {c.id for c in analyst_root.collections}
check({cfg["cert"], cfg["shared"], cfg["partner_inbox"], cfg["other_inbox"]} <= ids, "analyst lists every collection")

partner_root = ApiRoot(root_url, user="partner", password=cfg["partner"])
seen = {c.id: c for c in partner_root.collections}
check(set(seen) == {cfg["shared"], cfg["partner_inbox"]}, f"partner lists only its collections: {sorted(seen)}")
check(seen[cfg["shared"]].can_read and not seen[cfg["shared"]].can_write, "shared view is read-only")
check(seen[cfg["partner_inbox"]].can_write, "partner may write its own collection")

# The partner adds a bundle to its own collection.
bundle = open(cfg["bundle"]).read()
inbox = Collection(f"{root_url}collections/{cfg['partner_inbox']}/", user="partner", password=cfg["partner"])
status = inbox.add_objects(bundle)
n = len(json.loads(bundle)["objects"])
check(status.status == "complete" and status.success_count == n and status.failure_count == 0,
      f"add_objects: {status.success_count}/{n} succeeded")
got = inbox.get_objects()
check(len(got.get("objects", [])) == n, "the partner reads back what it added")
one = json.loads(bundle)["objects"][0]["id"]
check(inbox.get_object(one)["objects"][0]["id"] == one, "get_object")
check(len(inbox.object_versions(one)["versions"]) >= 1, "object_versions")
check(len(inbox.get_manifest().get("objects", [])) == n, "manifest")

# The partner may not read the CERT's own collection, nor another partner's.
for cid in (cfg["cert"], cfg["other_inbox"]):
    refused = Collection(f"{root_url}collections/{cid}/", user="partner", password=cfg["partner"],
                         collection_info={"id": cid, "title": "x", "can_read": True, "can_write": False})
    try:
        refused.get_objects()
        check(False, f"partner refused collection {cid}")
    except requests.exceptions.HTTPError as e:
        check(e.response.status_code == 403, f"partner refused collection {cid} ({e.response.status_code})")

# The shared view never shows an object above TLP:GREEN.
shared = Collection(f"{root_url}collections/{cfg['shared']}/", user="partner", password=cfg["partner"])
red_or_amber = {"marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
                "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
                "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
                "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
                "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"}
shared_objects = [o for page in as_pages(shared.get_objects, per_request=50) for o in page.get("objects", [])]
check(len(shared_objects) >= 1, f"shared view has {len(shared_objects)} objects")
check(not any(set(o.get("object_marking_refs", [])) & red_or_amber for o in shared_objects),
      "no shared object is marked above TLP:GREEN")

# The analyst pages through the CERT collection two objects at a time, then with added_after.
cert = Collection(f"{root_url}collections/{cfg['cert']}/", user="analyst", password=cfg["analyst"])
everything = cert.get_objects(limit=1000)
total = len(everything.get("objects", []))
pages = list(as_pages(cert.get_objects, per_request=2))
paged = [o["id"] for p in pages for o in p.get("objects", [])]
check(len(pages) >= 2 and len(paged) == total and len(set(paged)) == total,
      f"paging by 2: {len(pages)} pages, {len(paged)} of {total} objects")
check(cert.get_objects(added_after="2099-01-01T00:00:00.000Z").get("objects") is None, "added_after in the future: nothing")
check(len(cert.get_objects(added_after="2000-01-01T00:00:00.000Z", limit=1000).get("objects", [])) == total,
      "added_after in the past: everything")
typed = cert.get_objects(type="indicator", limit=1000).get("objects", [])
check(typed and all(o["type"] == "indicator" for o in typed), f"match[type]=indicator: {len(typed)}")
print("all TAXII checks passed")
