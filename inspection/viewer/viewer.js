// The substation viewer: loads /glb/<substation>.glb into <model-viewer>, frames the current
// step's equipment (query ?substation=S&step=N&asset=SCL/PATH) and lists its state and values.
const params = new URLSearchParams(location.search);
const substation = params.get('substation') || '';
const step = params.get('step');
const assetPath = params.get('asset');
const model = document.getElementById('model');
const status = document.getElementById('status');
const details = document.getElementById('details');

function text(tag, value) {
  const el = document.createElement(tag);
  el.textContent = value;
  return el;
}

function showAsset(asset) {
  details.replaceChildren(text('strong', `${asset.scl_path} (${asset.kind}): ${asset.state}`));
  const values = Object.entries(asset.values || {});
  if (values.length) {
    const table = document.createElement('table');
    for (const [name, value] of values) {
      const row = table.insertRow();
      row.insertCell().textContent = name;
      row.insertCell().textContent = value === null ? 'n/a' : Number(value).toPrecision(4);
    }
    details.append(table);
  }
  for (const reason of asset.reasons || []) details.append(text('div', reason));
}

function frame(asset) {
  const [x, y, z] = asset.position;
  const top = y + (asset.height || 2);
  model.cameraTarget = `${x}m ${top / 2}m ${z}m`;
  model.cameraOrbit = '30deg 60deg 14m';
  const hotspot = document.createElement('div');
  hotspot.className = 'hotspot';
  hotspot.slot = 'hotspot-step';
  hotspot.dataset.position = `${x}m ${top + 0.5}m ${z}m`;
  hotspot.dataset.normal = '0m 1m 0m';
  hotspot.textContent = step ? `step ${step}: ${asset.scl_path}` : asset.scl_path;
  model.querySelector('[slot="hotspot-step"]')?.remove();
  model.append(hotspot);
}

async function load() {
  if (!substation) {
    status.textContent = 'no substation given: open /?substation=NAME';
    return;
  }
  document.getElementById('title').textContent = `Substation ${substation}`;
  const stepLine = document.getElementById('step');
  if (step || assetPath) {
    stepLine.hidden = false;
    stepLine.textContent = `${step ? `Step ${step}` : 'Equipment'}${assetPath ? `: ${assetPath}` : ''}`;
  }
  const response = await fetch(`/api/substation/${encodeURIComponent(substation)}.json`);
  if (!response.ok) {
    status.textContent = await response.text();
    return;
  }
  const info = await response.json();
  model.src = `/glb/${encodeURIComponent(substation)}.glb?t=${Date.now()}`;
  const when = new Date(info.time * 1000).toLocaleTimeString();
  const counts = {};
  for (const a of info.assets) counts[a.state] = (counts[a.state] || 0) + 1;
  const summary = Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(', ');
  status.textContent = `live state as of ${when}: ${summary}${info.note ? ` (${info.note})` : ''}`;
  const current = info.assets.find((a) => a.scl_path === assetPath);
  if (current) {
    frame(current);
    showAsset(current);
  } else if (assetPath) {
    details.textContent = `${assetPath} is not equipment of ${substation}`;
  }
  document.body.dataset.loaded = 'info';
}

model.addEventListener('load', () => { document.body.dataset.model = 'loaded'; });
model.addEventListener('error', (event) => { status.textContent = `the model did not load: ${event.detail?.type || 'error'}`; });
document.getElementById('refresh').addEventListener('click', load);
load().catch((error) => { status.textContent = `cannot reach the viewer server: ${error}`; });
