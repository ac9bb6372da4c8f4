"use strict";
// Filters the trajectories on the page and fills in their bodies; it never builds markup of its own.
// A page with a files folder lists only summaries: a trajectory's body, markup rendered and escaped
// by codevision like the rest of the page, comes from a body file of that folder (listed in
// main[data-files]) when the trajectory is opened or searched. A body file calls codevisionBodies.
(() => {
  const main = document.getElementById("trajectories");
  const items = Array.from(main.querySelectorAll("details.traj"));
  const files = main.dataset.files.split(" ").filter(Boolean);
  const outcomeBoxes = Array.from(document.querySelectorAll('input[name="outcome"]'));
  const selects = Array.from(document.querySelectorAll("select[data-filter]"));
  const search = document.getElementById("f-search");
  const count = document.getElementById("visible-count");
  const noMatch = document.getElementById("no-match");
  const loading = document.getElementById("loading");
  const texts = new Map();
  const loads = new Map();
  const arrivals = new Map();

  // Lower-cased text of a trajectory, computed on first search only: it is large and rarely needed.
  const textOf = (item) => {
    let text = texts.get(item);
    if (text === undefined) {
      text = item.textContent.toLowerCase();
      texts.set(item, text);
    }
    return text;
  };

  window.codevisionBodies = (number, bodies) => {
    const arrive = arrivals.get(number);
    if (arrive) arrive(bodies);
  };

  // The bodies of file `number`, put into their trajectories; each file is fetched once.
  const loadFile = (number) => {
    if (!loads.has(number)) {
      const loaded = new Promise((resolve, reject) => {
        arrivals.set(number, resolve);
        const script = document.createElement("script");
        script.src = files[number];
        script.onload = () => reject(new Error(`${files[number]} holds no trajectory bodies`));
        script.onerror = () => reject(new Error(`${files[number]} could not be read`));
        document.head.append(script);
      }).then(
        (bodies) => {
          for (const item of items) {
            if (item.dataset.file === String(number)) {
              item.querySelector(".body").innerHTML = bodies[Number(item.dataset.slot)];
              texts.delete(item);
            }
          }
        },
        (error) => {
          for (const item of items) {
            if (item.dataset.file === String(number)) {
              item.querySelector(".body").textContent = `${error.message}: keep the page beside its files folder.`;
            }
          }
        },
      );
      loads.set(number, loaded);
    }
    return loads.get(number);
  };

  const loadBody = (item) => (item.dataset.file === undefined ? Promise.resolve() : loadFile(Number(item.dataset.file)));

  const loadAll = () => {
    loading.hidden = false;
    return Promise.all(files.map((_, number) => loadFile(number))).then(() => {
      loading.hidden = true;
    });
  };

  const apply = () => {
    const outcomes = new Set(outcomeBoxes.filter((box) => box.checked).map((box) => box.value));
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const item of items) {
      const visible =
        outcomes.has(item.dataset.outcome) &&
        selects.every((select) => select.value === "" || select.value === "=" + item.dataset[select.dataset.filter]) &&
        words.every((word) => textOf(item).includes(word));
      item.hidden = !visible;
      if (visible) shown += 1;
    }
    count.textContent = String(shown);
    noMatch.hidden = shown > 0;
  };

  const setOpen = (open) => {
    for (const item of items) if (!item.hidden) item.open = open;
  };

  for (const box of outcomeBoxes) box.addEventListener("change", apply);
  for (const select of selects) select.addEventListener("change", apply);
  search.addEventListener("input", () => {
    if (search.value.trim()) loadAll().then(apply);
    apply();
  });
  document.getElementById("expand-all").addEventListener("click", () => setOpen(true));
  document.getElementById("collapse-all").addEventListener("click", () => setOpen(false));
  // "toggle" does not bubble; listening while it is captured catches every trajectory's.
  main.addEventListener(
    "toggle",
    (event) => {
      if (event.target.open && event.target.matches("details.traj")) loadBody(event.target);
    },
    true,
  );
  document.addEventListener("click", (event) => {
    const image = event.target.closest("figure.shot img");
    if (!image) return;
    if (image.dataset.full) {
      image.src = image.dataset.full;
      delete image.dataset.full;
    }
    image.classList.toggle("zoom");
  });
  for (const item of items) if (item.open) loadBody(item);
  apply();
})();
