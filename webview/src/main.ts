// The cache inspector's browser side (DESIGN.md §5). Until the sidecar reports cache statistics it renders an
// explicit empty state, so an open panel never looks broken or stuck loading.

function render(root: HTMLElement): void {
	const heading = document.createElement('h2');
	heading.textContent = 'repokv cache inspector';
	const empty = document.createElement('p');
	empty.className = 'empty-state';
	empty.textContent = 'No data yet. Statistics appear here after the first completion request.';
	root.replaceChildren(heading, empty);
}

render(document.getElementById('root') ?? document.body);
