// Runway's own Node SDK against stillmotion: create a task, wait for it, print the task as JSON.
// Run by tests/integration/test_runway_surface.py with RUNWAY_BASE_URL, RUNWAYML_API_SECRET
// and PROMPT_IMAGE (a data URI) in the environment.
import RunwayML from '@runwayml/sdk';

const client = new RunwayML({ baseURL: process.env.RUNWAY_BASE_URL });
const task = await client.imageToVideo
  .create({
    model: 'gen3a_turbo',
    promptImage: process.env.PROMPT_IMAGE,
    promptText: 'slow push in',
    ratio: '768:1280',
    duration: 5,
    stillmotion: { loop: true },
  })
  .waitForTaskOutput({ timeout: 120_000 });
console.log(JSON.stringify(task));
