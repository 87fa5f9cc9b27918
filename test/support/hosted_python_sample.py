"""A faithful re-implementation of the SSE parser in the hosted task API's Python examples.

The suite runs it as a child process to check that a client written from those docs reads every
frame Airlock sends. parse_sse_stream keeps the sample's parsing exactly, quirks included: lines
from requests' iter_lines(), blank and ':' lines skipped, `event:` and `data:` prefixes removed
with str.replace, data that is not JSON silently dropped. Only the constants come from the
environment (BASE_URL, API_KEY).

Usage: BASE_URL=… API_KEY=… python3 hosted_python_sample.py <task id>
Prints one JSON line per event the parser yields ({"event", "data"}), flushed at once so that the
caller can act on a live stream (approve a call), then {"final_response": …} from
process_sse_stream's logic when the stream ends.
"""

import json
import os
import sys

import requests

API_KEY = os.environ.get('API_KEY', '')
BASE_URL = os.environ.get('BASE_URL', '')


def parse_sse_stream(task_id):
    """Connect to stream endpoint and yield SSE events."""
    response = requests.get(
        f'{BASE_URL}/api/v1/tasks/{task_id}/stream',
        headers={'Authorization': f'Bearer {API_KEY}'},
        stream=True
    )

    event_type = None
    for line in response.iter_lines():
        if not line:
            continue

        line = line.decode('utf-8')
        if line.startswith(':'):
            continue  # heartbeats
        elif line.startswith('event:'):
            event_type = line.replace('event: ', '')
        elif line.startswith('data:'):
            try:
                data = json.loads(line.replace('data: ', ''))
                yield event_type, data
            except json.JSONDecodeError:
                pass


def main():
    final_response = ''
    for event_type, data in parse_sse_stream(sys.argv[1]):
        print(json.dumps({'event': event_type, 'data': data}), flush=True)
        # process_sse_stream's capture of the final response
        if event_type == 'done':
            final_response = data.get('finalResponse', '')
    print(json.dumps({'final_response': final_response}), flush=True)


if __name__ == '__main__':
    main()
