// The one import map of every SpatialTwin page: bare `three` and `three/addons/` name the
// three.js the server vendors at /vendor/three/ (no CDN, no external network).
//
// A classic, parser-blocking script, included before any module script or modulepreload:
//   <script src="/web/lib/importmap.js"></script>
// It inserts the map right after itself, so the browser has it before the first module is
// resolved. (An import map cannot be loaded with `src`, hence this script.)
(() => {
  const map = {
    imports: {
      three: '/vendor/three/build/three.module.min.js',
      'three/addons/': '/vendor/three/examples/jsm/',
    },
  };
  const script = document.createElement('script');
  script.type = 'importmap';
  script.textContent = JSON.stringify(map);
  document.currentScript.after(script);
})();
