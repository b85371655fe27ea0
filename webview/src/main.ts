import { startAsk } from './ask';
import { startInspector } from './inspector';

// One bundle for both of repokv's webviews; the host says which one this page is with `<body data-view>`.

const root = document.getElementById('root') ?? document.body;
if (document.body.dataset['view'] === 'ask') {
	startAsk(root);
} else {
	startInspector(root);
}
