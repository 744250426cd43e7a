/* classroom-edge, the pupil's page: a class link lists the class (config.classmates); the pupil
 * picks their name once (remembered on this phone) and their attendance then counts, marked as
 * not verified. */

function pickKey(config) { return 'classroom-edge-me-' + (config ? config['class'] : ''); }

export function remember(config, choice) {
  try {
    if (choice) window.localStorage.setItem(pickKey(config), choice.key); else window.localStorage.removeItem(pickKey(config));
  } catch (e) { /* not remembered */ }
}

export function rememberedChoice(config) {
  const list = (config && config.classmates) || [];
  let key = null;
  try { key = window.localStorage.getItem(pickKey(config)); } catch (e) { /* storage disabled */ }
  return list.filter((c) => c.key === key)[0] || null;
}

// One button a classmate; a tap hides the list and calls onPick(classmate).
export function renderPicker(config, onPick) {
  const box = document.getElementById('picker'), list = document.getElementById('picker-list');
  document.getElementById('picker-title').hidden = true;     // the overlay says it already
  list.textContent = '';
  (config.classmates || []).forEach((c) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'btn';
    b.textContent = c.name;
    b.onclick = () => {
      box.hidden = true;
      onPick(c);
    };
    list.appendChild(b);
  });
  box.hidden = false;
}
