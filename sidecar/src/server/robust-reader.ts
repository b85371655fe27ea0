import { StreamMessageReader } from 'vscode-languageserver/node';

// vscode-jsonrpc's stream reader stops parsing the data it holds when it meets a broken header (no Content-Length,
// a line without ':'): it reports the error and returns, so well-formed messages that arrived in the same chunk
// wait until the client happens to write again. A request could hang forever behind one bad frame (found by
// test/fuzz/lsp.fuzz.mjs). This reader resumes parsing what it holds after every error.

export class ResumingMessageReader extends StreamMessageReader {
	private resumeScheduled = false;

	protected override fireError(error: unknown): void {
		super.fireError(error);
		if (this.resumeScheduled) {
			return;
		}
		this.resumeScheduled = true;
		setImmediate(() => {
			this.resumeScheduled = false;
			// `onData` is private in the typings; appending nothing makes it parse the buffered bytes again.
			(this as unknown as { onData(data: Uint8Array): void }).onData(new Uint8Array(0));
		});
	}
}
