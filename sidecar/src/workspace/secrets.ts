// Files that must never reach a prompt, whatever the ignore files say. A prompt is model input that can end up in
// logs, caches and benchmark outputs, so anything that looks like a credential is kept out by name. The list errs
// on the side of skipping: losing a file's context costs little, leaking a key costs a lot.

/** Basename patterns of secret-looking files (matched case-insensitively). */
const secretBasenames: readonly RegExp[] = [
	/^\.env(\..*)?$/, // .env, .env.local, .env.production ...
	/^.*\.env$/, // production.env
	/^\.?envrc$/,
	/^id_(rsa|dsa|ecdsa|ed25519)(\..*)?$/, // SSH keys and their .pub companions
	/\.(pem|key|p12|pfx|jks|keystore|crt|cer|der|asc|gpg|kdbx|ovpn)$/,
	/^\.(npmrc|pypirc|netrc|pgpass|git-credentials|htpasswd)$/,
	/^(credentials|secrets?)(\..*)?$/, // credentials.json, secrets.yaml, secret.txt
	/(^|[-_.])(credentials?|secrets?)\.(json|ya?ml|toml|ini|txt|xml)$/, // aws-credentials.json, app.secret.json
	/^service[-_]?account.*\.json$/, // Google Cloud service account keys
	/^client_secret.*\.json$/, // OAuth client secrets
	/^\.aws$/,
	/^terraform\.tfstate(\.backup)?$/,
	/\.tfvars$/,
];

/** Folder names whose whole content is secret (e.g. `~/.ssh` copied into a project). */
const secretFolders: ReadonlySet<string> = new Set(['.ssh', '.gnupg', '.aws', '.azure', '.docker']);

/**
 * Whether a workspace-relative path (forward slashes) names a secret-looking file, or lies inside a secret folder.
 */
export function isSecretPath(relativePath: string): boolean {
	const parts = relativePath.toLowerCase().split('/');
	const basename = parts[parts.length - 1] ?? '';
	if (parts.slice(0, -1).some((part) => secretFolders.has(part))) {
		return true;
	}
	return secretBasenames.some((pattern) => pattern.test(basename));
}

/** Whether a folder name is one whose whole content is secret. */
export function isSecretFolder(name: string): boolean {
	return secretFolders.has(name.toLowerCase());
}
